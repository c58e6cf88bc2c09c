"""A keychain that never answers, like a locked collection waiting on a prompt nobody sees."""

import time

from keyring.backend import KeyringBackend


class Keyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def get_password(self, service, username):  # type: ignore[no-untyped-def]
        time.sleep(600)

    def set_password(self, service, username, password):  # type: ignore[no-untyped-def]
        time.sleep(600)

    def delete_password(self, service, username):  # type: ignore[no-untyped-def]
        time.sleep(600)
