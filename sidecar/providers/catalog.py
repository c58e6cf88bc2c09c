"""The built-in providers: data only. Every OpenAI-compatible service is one entry here,
not a copy of the OpenAI code; differences are fields (headers, quirk flags).

Prices are the providers' public list prices in USD per 1M tokens as published in October 2025
(standard tier, short-context rate where a long prompt costs more; no batch or regional discounts).
They only feed the usage log's cost *estimate*; None where not known with confidence, or where an
alias (``-latest``) can move to a model with another price.

``embedding=True`` marks an embedding model (for ``llm_embed``, not for chat; it has no output, so its
output price is 0); every other catalog model is a chat model, which ``llm_embed`` refuses before the network.

``api="responses"`` marks a model OpenAI serves only through its Responses API (the ``-pro`` and codex models
answer Chat Completions with an error): requests for it go to ``/responses`` (protocol ``openai-responses``) on an
``openai`` provider (``providers.routing``). Azure OpenAI serves the Responses API at ``{resource}/openai/v1/responses``
(the deployment's name as ``model``, the key in ``api-key``: its ``responses_path``); OpenRouter at
``https://openrouter.ai/api/v1/responses`` (in beta; the stream ends with ``data: [DONE]``). Either is chosen per
request with ``provider_options.api: "responses"``, or for every request with configure_provider's ``protocol``.

``vision=False`` only where the model is known to take text only: a request with images for it is
refused before the network (``invalid_request``); None (unknown) lets the request through.
"""

from __future__ import annotations

from ..types import OAuthConfig, ProviderLimits
from .model import Model, Provider

M = Model

CLAUDE_CODE_MIN_VERSION = "2.1.332"
"""the oldest ``claude`` the claude-code provider runs: the version every option it passes was checked against
(``claude --help``) and its tests run with; an older one is ``provider_not_installed``"""

_CLAUDE_MODELS = (
    # the CLI's aliases (it sends the current model of each family) and full ids; the subscription pays
    M("sonnet", "Claude Sonnet (latest, via Claude Code)", tools=False, vision=True, reasoning=True),
    M("opus", "Claude Opus (latest, via Claude Code)", tools=False, vision=True, reasoning=True),
    M("haiku", "Claude Haiku (latest, via Claude Code)", tools=False, vision=True, reasoning=True),
    M("claude-sonnet-4-5", "Claude Sonnet 4.5 (via Claude Code)", 200_000, 64_000, tools=False, vision=True,
      reasoning=True),
    M("claude-opus-4-1", "Claude Opus 4.1 (via Claude Code)", 200_000, 32_000, tools=False, vision=True,
      reasoning=True),
    M("claude-haiku-4-5", "Claude Haiku 4.5 (via Claude Code)", 200_000, 64_000, tools=False, vision=True,
      reasoning=True),
)

COPILOT_HEADERS = {
    # Copilot's API answers only clients that say which editor integration they are (as editors that integrate
    # Copilot do); these are the values VS Code's Copilot Chat sends
    "Editor-Version": "vscode/1.99.3",
    "Editor-Plugin-Version": "copilot-chat/0.26.7",
    "Copilot-Integration-Id": "vscode-chat",
    "User-Agent": "GitHubCopilotChat/0.26.7",
    "Openai-Intent": "conversation-panel",
}

OFFLINE_MODEL = "mock:echo"
"""the built-in model that needs no key and no network (the terminal chat's default)"""

BUILTIN: tuple[Provider, ...] = (
    Provider(
        id="mock",
        name="Mock (offline)",
        protocol="mock",
        transport="mock",
        base_url="mock://local",
        requires_api_key=False,
        is_local=True,
        configurable=False,
        models=(
            M("echo", "Echo: streams the last user message back", 1_000_000, 1_000_000, tools=False),
            M("script", "Script: plays back provider_options.script, one step per request", 1_000_000, 1_000_000,
              tools=True, reasoning=True),
            M("embed", "Embed: deterministic vectors from the words (llm_embed), for offline RAG", 1_000_000,
              embedding=True),
        ),
    ),
    Provider(
        id="openai",
        name="OpenAI",
        protocol="openai",
        base_url="https://api.openai.com/v1",
        api_key_env="OPENAI_API_KEY",
        max_tokens_field="max_completion_tokens",
        models=(
            M("gpt-4.1", "GPT-4.1", 1_047_576, 32_768, tools=True, vision=True,
              input_price=2.0, output_price=8.0, cached_input_price=0.5),
            M("gpt-4.1-mini", "GPT-4.1 mini", 1_047_576, 32_768, tools=True, vision=True,
              input_price=0.4, output_price=1.6, cached_input_price=0.1),
            M("gpt-4o", "GPT-4o", 128_000, 16_384, tools=True, vision=True,
              input_price=2.5, output_price=10.0, cached_input_price=1.25),
            M("gpt-4o-mini", "GPT-4o mini", 128_000, 16_384, tools=True, vision=True,
              input_price=0.15, output_price=0.6, cached_input_price=0.075),
            M("o4-mini", "o4-mini", 200_000, 100_000, tools=True, vision=True, reasoning=True,
              input_price=1.1, output_price=4.4, cached_input_price=0.275),
            # served only by the Responses API
            M("gpt-5-pro", "GPT-5 pro", 400_000, 272_000, tools=True, vision=True, reasoning=True,
              input_price=15.0, output_price=120.0, api="responses"),
            M("o3-pro", "o3-pro", 200_000, 100_000, tools=True, vision=True, reasoning=True,
              input_price=20.0, output_price=80.0, api="responses"),
            M("o1-pro", "o1-pro", 200_000, 100_000, tools=True, vision=True, reasoning=True,
              input_price=150.0, output_price=600.0, api="responses"),
            M("gpt-5-codex", "GPT-5-Codex", 400_000, 128_000, tools=True, vision=True, reasoning=True,
              input_price=1.25, output_price=10.0, cached_input_price=0.125, api="responses"),
            M("codex-mini-latest", "codex-mini", 200_000, 100_000, tools=True, vision=True, reasoning=True,
              input_price=1.5, output_price=6.0, cached_input_price=0.375, api="responses"),
            M("text-embedding-3-small", "Text Embedding 3 small (1536 dimensions)", 8_191, embedding=True,
              input_price=0.02, output_price=0.0),
            M("text-embedding-3-large", "Text Embedding 3 large (3072 dimensions)", 8_191, embedding=True,
              input_price=0.13, output_price=0.0),
        ),
    ),
    Provider(
        id="anthropic",
        name="Anthropic",
        protocol="anthropic",
        base_url="https://api.anthropic.com",
        api_key_env="ANTHROPIC_API_KEY",
        models=(
            # cache reads at 0.1x input; cache writes (1.25x) are estimated at the input price
            M("claude-sonnet-4-5", "Claude Sonnet 4.5", 200_000, 64_000, tools=True, vision=True, reasoning=True,
              input_price=3.0, output_price=15.0, cached_input_price=0.3),
            M("claude-opus-4-1", "Claude Opus 4.1", 200_000, 32_000, tools=True, vision=True, reasoning=True,
              input_price=15.0, output_price=75.0, cached_input_price=1.5),
            M("claude-haiku-4-5", "Claude Haiku 4.5", 200_000, 64_000, tools=True, vision=True, reasoning=True,
              input_price=1.0, output_price=5.0, cached_input_price=0.1),
        ),
    ),
    Provider(
        # the official `claude` program, run per request (process transport): a Claude Pro/Max sign-in works
        id="claude-code",
        name="Claude Code (Claude subscription)",
        protocol="claude-code",
        transport="process",
        base_url="https://api.anthropic.com",  # where the program sends (unless ANTHROPIC_BASE_URL says otherwise)
        api_key_env="CLAUDE_CODE_OAUTH_TOKEN",  # a `claude setup-token` token; optional: the program's own login
        requires_api_key=False,
        limits=ProviderLimits(max_concurrency=2),  # each request is a process
        models=_CLAUDE_MODELS,
    ),
    Provider(
        # the Claude Code program Claude Desktop installs for itself, with the desktop app's sign-in
        id="claude-desktop",
        name="Claude Desktop (its Claude Code)",
        protocol="claude-code",
        transport="process",
        base_url="https://api.anthropic.com",
        api_key_env="CLAUDE_CODE_OAUTH_TOKEN",
        requires_api_key=False,
        limits=ProviderLimits(max_concurrency=2),
        models=_CLAUDE_MODELS,
    ),
    Provider(
        id="gemini",
        name="Google Gemini",
        protocol="gemini",
        base_url="https://generativelanguage.googleapis.com/v1beta",
        api_key_env="GEMINI_API_KEY",
        models=(
            # text input; 2.5 Pro prompts over 200k tokens cost 2.50 / 15.00
            M("gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576, 65_536, tools=True, vision=True, reasoning=True,
              input_price=1.25, output_price=10.0),
            M("gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576, 65_536, tools=True, vision=True, reasoning=True,
              input_price=0.3, output_price=2.5),
            M("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1_048_576, 65_536, tools=True, vision=True,
              input_price=0.1, output_price=0.4),
            M("gemini-embedding-001", "Gemini Embedding (3072 dimensions)", 2_048, embedding=True,
              input_price=0.15, output_price=0.0),
            M("text-embedding-004", "Text Embedding 004 (768 dimensions)", 2_048, embedding=True),
        ),
    ),
    Provider(
        id="cohere",
        name="Cohere",
        protocol="cohere",
        base_url="https://api.cohere.com",
        api_key_env="COHERE_API_KEY",
        models=(
            M("command-a-03-2025", "Command A", 256_000, 8_000, tools=True, vision=False,
              input_price=2.5, output_price=10.0),
            M("command-a-reasoning-08-2025", "Command A Reasoning", 256_000, 32_000, tools=True, vision=False,
              reasoning=True),
            M("command-r-plus-08-2024", "Command R+", 128_000, 4_000, tools=True, vision=False,
              input_price=2.5, output_price=10.0),
            M("embed-v4.0", "Embed v4 (1536 dimensions)", 128_000, embedding=True,
              input_price=0.12, output_price=0.0),
            M("embed-english-v3.0", "Embed English v3 (1024 dimensions)", 512, embedding=True,
              input_price=0.1, output_price=0.0),
            M("embed-multilingual-v3.0", "Embed Multilingual v3 (1024 dimensions)", 512, embedding=True,
              input_price=0.1, output_price=0.0),
        ),
    ),
    Provider(
        id="azure-openai",
        name="Azure OpenAI",
        protocol="openai",
        base_url="https://YOUR-RESOURCE.openai.azure.com/openai",  # set yours with configure_provider
        api_key_env="AZURE_OPENAI_API_KEY",
        api_version="2024-10-21",
        responses_path="/v1/responses",  # the v1 API: {resource}/openai/v1/responses, the deployment as model
    ),
    Provider(
        id="fireworks",
        name="Fireworks AI",
        protocol="openai",
        base_url="https://api.fireworks.ai/inference/v1",
        api_key_env="FIREWORKS_API_KEY",
        models=(
            M("accounts/fireworks/models/llama-v3p3-70b-instruct", "Llama 3.3 70B", 131_072, tools=True, vision=False,
              input_price=0.9, output_price=0.9),
        ),
    ),
    Provider(
        id="perplexity",
        name="Perplexity",
        protocol="openai",
        base_url="https://api.perplexity.ai",
        api_key_env="PERPLEXITY_API_KEY",
        models=(
            # tokens only: Perplexity also charges per search request, which the estimate leaves out
            M("sonar", "Sonar", 128_000, input_price=1.0, output_price=1.0),
            M("sonar-pro", "Sonar Pro", 200_000, input_price=3.0, output_price=15.0),
            M("sonar-reasoning-pro", "Sonar Reasoning Pro", 128_000, reasoning=True, input_price=2.0, output_price=8.0),
        ),
    ),
    Provider(
        id="ollama",
        name="Ollama",
        protocol="ollama",
        base_url="http://127.0.0.1:11434",
        requires_api_key=False,
        is_local=True,
    ),
    Provider(
        id="groq",
        name="Groq",
        protocol="openai",
        base_url="https://api.groq.com/openai/v1",
        api_key_env="GROQ_API_KEY",
        models=(
            M("llama-3.3-70b-versatile", "Llama 3.3 70B", 131_072, 32_768, tools=True, vision=False,
              input_price=0.59, output_price=0.79),
            M("llama-3.1-8b-instant", "Llama 3.1 8B", 131_072, tools=True, vision=False,
              input_price=0.05, output_price=0.08),
            M("openai/gpt-oss-120b", "GPT-OSS 120B", 131_072, tools=True, vision=False, reasoning=True,
              input_price=0.15, output_price=0.75),
        ),
    ),
    Provider(
        id="together",
        name="Together AI",
        protocol="openai",
        base_url="https://api.together.xyz/v1",
        api_key_env="TOGETHER_API_KEY",
        models=(
            M("meta-llama/Llama-3.3-70B-Instruct-Turbo", "Llama 3.3 70B Turbo", 131_072, tools=True, vision=False,
              input_price=0.88, output_price=0.88),
            M("deepseek-ai/DeepSeek-R1", "DeepSeek R1", vision=False, reasoning=True,
              input_price=3.0, output_price=7.0),
        ),
    ),
    Provider(
        id="deepseek",
        name="DeepSeek",
        protocol="openai",
        base_url="https://api.deepseek.com/v1",
        api_key_env="DEEPSEEK_API_KEY",
        models=(
            # V3.2-Exp prices (from 2025-09-29), the same for both; cache hits 0.028
            M("deepseek-chat", "DeepSeek Chat", 128_000, 8_192, tools=True, vision=False,
              input_price=0.28, output_price=0.42, cached_input_price=0.028),
            M("deepseek-reasoner", "DeepSeek Reasoner", 128_000, 65_536, tools=True, vision=False, reasoning=True,
              input_price=0.28, output_price=0.42, cached_input_price=0.028),
        ),
    ),
    Provider(
        id="mistral",
        name="Mistral",
        protocol="openai",
        base_url="https://api.mistral.ai/v1",
        api_key_env="MISTRAL_API_KEY",
        stream_usage=False,  # usage comes in the last chunk anyway
        models=(  # no prices: the -latest aliases move between models with different prices
            M("mistral-large-latest", "Mistral Large", tools=True),
            M("mistral-small-latest", "Mistral Small", tools=True),
            M("mistral-embed", "Mistral Embed (1024 dimensions)", 8_192, embedding=True,
              input_price=0.1, output_price=0.0),
        ),
    ),
    Provider(
        id="openrouter",
        name="OpenRouter",
        protocol="openai",
        base_url="https://openrouter.ai/api/v1",
        api_key_env="OPENROUTER_API_KEY",
        headers={"X-Title": "llm-sidecar"},  # OpenRouter's app attribution; set HTTP-Referer with configure_provider
        models=(
            M("openai/gpt-4o-mini", "GPT-4o mini (via OpenRouter)", 128_000, tools=True, vision=True,
              input_price=0.15, output_price=0.6),
        ),
    ),
    Provider(
        id="xai",
        name="xAI",
        protocol="openai",
        base_url="https://api.x.ai/v1",
        api_key_env="XAI_API_KEY",
        models=(
            M("grok-4", "Grok 4", 256_000, tools=True, vision=True, reasoning=True,
              input_price=3.0, output_price=15.0, cached_input_price=0.75),
            M("grok-3-mini", "Grok 3 mini", 131_072, tools=True, vision=False, reasoning=True,
              input_price=0.3, output_price=0.5),
        ),
    ),
    Provider(
        id="lmstudio",
        name="LM Studio",
        protocol="openai",
        base_url="http://127.0.0.1:1234/v1",
        api_key_env="LMSTUDIO_API_KEY",
        requires_api_key=False,
        is_local=True,
    ),
    Provider(
        id="vllm",
        name="vLLM",
        protocol="openai",
        base_url="http://127.0.0.1:8000/v1",
        api_key_env="VLLM_API_KEY",
        requires_api_key=False,
        is_local=True,
    ),
    Provider(
        id="jan",
        name="Jan",
        protocol="openai",
        base_url="http://127.0.0.1:1337/v1",
        api_key_env="JAN_API_KEY",
        requires_api_key=False,
        is_local=True,
    ),
    Provider(
        id="llamacpp",
        name="llama.cpp server",
        protocol="openai",
        base_url="http://127.0.0.1:8080/v1",
        api_key_env="LLAMACPP_API_KEY",
        requires_api_key=False,
        is_local=True,
    ),
    Provider(
        # GitHub's device flow with the client id editors' Copilot plugins use, then the GitHub token exchanged
        # for a short-lived Copilot token whose answer names the API base (individual, business, enterprise)
        id="github-copilot",
        name="GitHub Copilot (sign in with GitHub)",
        protocol="openai",
        base_url="https://api.githubcopilot.com",
        headers=COPILOT_HEADERS,
        oauth=OAuthConfig(
            flow="device",
            device_authorization_endpoint="https://github.com/login/device/code",
            token_endpoint="https://github.com/login/oauth/access_token",
            client_id="Iv1.b507a08c87ecfe98",
            scopes=["read:user"],
        ),
        session="copilot",
        session_endpoint="https://api.github.com/copilot_internal/v2/token",
        session_hosts=("githubcopilot.com",),
        models=(  # the plan decides which; the live list (GET /models) says
            M("gpt-4.1", "GPT-4.1 (via Copilot)", tools=True, vision=True),
            M("gpt-4o", "GPT-4o (via Copilot)", tools=True, vision=True),
        ),
    ),
    Provider(
        # the browser sign-in (PKCE) of OpenAI's open-source Codex CLI, its client id and registered redirect;
        # requests go to the ChatGPT plan's Responses endpoint with the account id from the ID token
        id="chatgpt",
        name="ChatGPT (sign in with a ChatGPT plan)",
        protocol="openai-responses",
        base_url="https://chatgpt.com/backend-api/codex",
        headers={"OpenAI-Beta": "responses=experimental", "originator": "codex_cli_rs"},
        oauth=OAuthConfig(
            flow="browser",
            authorization_endpoint="https://auth.openai.com/oauth/authorize",
            token_endpoint="https://auth.openai.com/oauth/token",
            client_id="app_EMoamEEZ73f0CkXaXp7hrann",
            scopes=["openid", "profile", "email", "offline_access"],
            extra_params={"id_token_add_organizations": "true", "codex_cli_simplified_flow": "true",
                          "originator": "codex_cli_rs"},
        ),
        redirect_uri="http://localhost:1455/auth/callback",
        session="chatgpt",
        models=(
            M("gpt-5", "GPT-5 (ChatGPT plan)", tools=True, vision=True, reasoning=True),
            M("gpt-5-codex", "GPT-5 Codex (ChatGPT plan)", tools=True, vision=True, reasoning=True),
        ),
    ),
    Provider(
        id="local",
        name="Local models (GGUF files run by the sidecar)",
        protocol="llama-cpp",
        transport="local",
        base_url="local://models",
        requires_api_key=False,
        is_local=True,
        # one model generates at a time: more requests wait in order (FIFO); configure_provider's limits
        # may raise it (each model still runs one request at a time: its lock)
        limits=ProviderLimits(max_concurrency=1),
    ),
)
