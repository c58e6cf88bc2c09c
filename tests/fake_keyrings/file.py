"""A keychain in a JSON file (``FAKE_KEYRING_FILE``) that a test can read from outside the sidecar.

With ``FAKE_KEYRING_BROKEN=1`` every write and delete fails, like a keychain that locked itself.
"""

import json
import os

from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, PasswordDeleteError


def entry(service: str, username: str) -> str:
    return f"{service}/{username}"


class Keyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def _load(self) -> dict[str, str]:
        try:
            with open(os.environ["FAKE_KEYRING_FILE"], encoding="utf-8") as f:
                return json.load(f)  # type: ignore[no-any-return]
        except FileNotFoundError:
            return {}

    def _store(self, data: dict[str, str]) -> None:
        path = os.environ["FAKE_KEYRING_FILE"]
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
        os.replace(path + ".tmp", path)

    def _check(self) -> None:
        if os.environ.get("FAKE_KEYRING_BROKEN") == "1":
            raise KeyringLocked("the fake keychain refuses every change")

    def get_password(self, service, username):  # type: ignore[no-untyped-def]
        return self._load().get(entry(service, username))

    def set_password(self, service, username, password):  # type: ignore[no-untyped-def]
        self._check()
        data = self._load()
        data[entry(service, username)] = password
        self._store(data)

    def delete_password(self, service, username):  # type: ignore[no-untyped-def]
        self._check()
        data = self._load()
        if data.pop(entry(service, username), None) is None:
            raise PasswordDeleteError(username)
        self._store(data)
