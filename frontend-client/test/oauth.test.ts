// signIn against the real sidecar and a real OAuth server: the authlib loopback authorization server of the
// Python tests (tests/oauth_server.py), run as a child process; the sidecar keeps the tokens in a file keychain.
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, it } from "node:test";
import { SidecarClient, SidecarError, type OAuthSignInStarted } from "llm-sidecar-client";
import { describeWithSidecar, repoRoot, sidecarEnv, sidecarPython, spawnSidecar, user } from "./helpers.js";

const SERVER = "from oauth_server import OAuthServer\nimport sys\ns = OAuthServer()\nprint(s.url, flush=True)\nsys.stdin.read()\ns.close()\n";

/** The loopback authorization server, and its URL once it listens. */
async function startServer(): Promise<{ proc: ChildProcessWithoutNullStreams; url: string }> {
  const proc = spawn(sidecarPython, ["-c", SERVER], { cwd: path.join(repoRoot, "tests") });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    proc.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("\n")) resolve(out.trim());
    });
    proc.on("exit", (code) => reject(new Error(`the OAuth test server exited (${String(code)})`)));
  });
  return { proc, url };
}

/** What the user does on the verification page. */
async function decide(started: OAuthSignInStarted, decision: "approve" | "deny"): Promise<void> {
  assert.equal(started.kind, "device");
  const body = new URLSearchParams({ user_code: started.user_code ?? "", decision });
  const answer = await fetch(started.verification_uri ?? "", { method: "POST", body });
  assert.equal(answer.status, 200);
}

describeWithSidecar("signIn: device flow against a loopback authorization server", () => {
  let server: { proc: ChildProcessWithoutNullStreams; url: string };
  let client: SidecarClient;

  before(async () => {
    server = await startServer();
    const keychain = path.join(mkdtempSync(path.join(tmpdir(), "llm-sidecar-oauth-")), "keychain.json");
    const env = {
      ...sidecarEnv(),
      PYTHONPATH: path.join(repoRoot, "tests"),
      PYTHON_KEYRING_BACKEND: "fake_keyrings.file.Keyring",
      FAKE_KEYRING_FILE: keychain,
    };
    client = await SidecarClient.connect(spawnSidecar({ env }));
    await client.call("llm_register_custom_provider", {
      id: "gw",
      name: "Gateway",
      protocol: "openai",
      base_url: `${server.url}/v1`,
      oauth: {
        flow: "device",
        device_authorization_endpoint: `${server.url}/device/code`,
        token_endpoint: `${server.url}/token`,
        client_id: "sidecar-test",
        scopes: ["chat"],
      },
    });
  });

  after(async () => {
    await client.close();
    server.proc.stdin.end();
  });

  it("resolves when signed in; the token then works", async () => {
    const codes: OAuthSignInStarted[] = [];
    const signedIn = await client.signIn("gw", {
      onCode: (started) => {
        codes.push(started);
        void decide(started, "approve");
      },
    });
    assert.equal(codes.length, 1);
    assert.match(codes[0]?.user_code ?? "", /^[A-Z]{4}-[A-Z]{4}$/);
    assert.equal(signedIn.flowId, codes[0]?.flow_id);
    const status = await client.oauthStatus({ provider: "gw" });
    assert.equal(status.signed_in, true);
    const providers = await client.listProviders();
    const gw = providers.find((p) => p.id === "gw");
    assert.equal(gw?.auth, "oauth");
    assert.equal(gw?.signed_in, true);
    const answer = await client.completeChat({ model: "gw:m", messages: [user("hi")] });
    assert.equal(answer.content, "gateway says hi");
  });

  it("rejects with permission_denied when the user denies", async () => {
    await assert.rejects(
      client.signIn("gw", { onCode: (started) => void decide(started, "deny") }),
      (error: unknown) => error instanceof SidecarError && error.errorCode === "permission_denied",
    );
  });

  it("an aborted signal cancels the flow: rejects with cancelled", async () => {
    const controller = new AbortController();
    let pending = 0;
    await assert.rejects(
      client.signIn("gw", {
        signal: controller.signal,
        onPending: () => {
          pending++;
          controller.abort();
        },
      }),
      (error: unknown) => error instanceof SidecarError && error.errorCode === "cancelled",
    );
    assert.equal(pending, 1);
  });

  it("a provider without sign-in: the start's error", async () => {
    await assert.rejects(
      client.signIn("openai"),
      (error: unknown) => error instanceof SidecarError && error.errorCode === "invalid_request",
    );
  });
});
