"""The built-in providers: data only. Every OpenAI-compatible service is one entry here,
not a copy of the OpenAI code; differences are fields (headers, quirk flags)."""

from __future__ import annotations

from .model import Model, Provider

M = Model

BUILTIN: tuple[Provider, ...] = (
    Provider(
        id="mock",
        name="Mock (offline)",
        protocol="mock",
        base_url="mock://local",
        requires_api_key=False,
        is_local=True,
        models=(M("echo", "Echo: streams the last user message back", 1_000_000, 1_000_000, tools=False),),
    ),
    Provider(
        id="openai",
        name="OpenAI",
        protocol="openai",
        base_url="https://api.openai.com/v1",
        api_key_env="OPENAI_API_KEY",
        max_tokens_field="max_completion_tokens",
        models=(
            M("gpt-4.1", "GPT-4.1", 1_047_576, 32_768, tools=True, vision=True),
            M("gpt-4.1-mini", "GPT-4.1 mini", 1_047_576, 32_768, tools=True, vision=True),
            M("gpt-4o", "GPT-4o", 128_000, 16_384, tools=True, vision=True),
            M("gpt-4o-mini", "GPT-4o mini", 128_000, 16_384, tools=True, vision=True),
            M("o4-mini", "o4-mini", 200_000, 100_000, tools=True, vision=True, reasoning=True),
        ),
    ),
    Provider(
        id="anthropic",
        name="Anthropic",
        protocol="anthropic",
        base_url="https://api.anthropic.com",
        api_key_env="ANTHROPIC_API_KEY",
        models=(
            M("claude-sonnet-4-5", "Claude Sonnet 4.5", 200_000, 64_000, tools=True, vision=True, reasoning=True),
            M("claude-opus-4-1", "Claude Opus 4.1", 200_000, 32_000, tools=True, vision=True, reasoning=True),
            M("claude-haiku-4-5", "Claude Haiku 4.5", 200_000, 64_000, tools=True, vision=True, reasoning=True),
        ),
    ),
    Provider(
        id="gemini",
        name="Google Gemini",
        protocol="gemini",
        base_url="https://generativelanguage.googleapis.com/v1beta",
        api_key_env="GEMINI_API_KEY",
        models=(
            M("gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576, 65_536, tools=True, vision=True, reasoning=True),
            M("gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576, 65_536, tools=True, vision=True, reasoning=True),
            M("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1_048_576, 65_536, tools=True, vision=True),
        ),
    ),
    Provider(
        id="cohere",
        name="Cohere",
        protocol="cohere",
        base_url="https://api.cohere.com",
        api_key_env="COHERE_API_KEY",
        models=(
            M("command-a-03-2025", "Command A", 256_000, 8_000, tools=True),
            M("command-a-reasoning-08-2025", "Command A Reasoning", 256_000, 32_000, tools=True, reasoning=True),
            M("command-r-plus-08-2024", "Command R+", 128_000, 4_000, tools=True),
        ),
    ),
    Provider(
        id="azure-openai",
        name="Azure OpenAI",
        protocol="openai",
        base_url="https://YOUR-RESOURCE.openai.azure.com/openai",  # set yours with configure_provider
        api_key_env="AZURE_OPENAI_API_KEY",
        api_version="2024-10-21",
    ),
    Provider(
        id="fireworks",
        name="Fireworks AI",
        protocol="openai",
        base_url="https://api.fireworks.ai/inference/v1",
        api_key_env="FIREWORKS_API_KEY",
        models=(M("accounts/fireworks/models/llama-v3p3-70b-instruct", "Llama 3.3 70B", 131_072, tools=True),),
    ),
    Provider(
        id="perplexity",
        name="Perplexity",
        protocol="openai",
        base_url="https://api.perplexity.ai",
        api_key_env="PERPLEXITY_API_KEY",
        models=(
            M("sonar", "Sonar", 128_000),
            M("sonar-pro", "Sonar Pro", 200_000),
            M("sonar-reasoning-pro", "Sonar Reasoning Pro", 128_000, reasoning=True),
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
            M("llama-3.3-70b-versatile", "Llama 3.3 70B", 131_072, 32_768, tools=True),
            M("llama-3.1-8b-instant", "Llama 3.1 8B", 131_072, tools=True),
            M("openai/gpt-oss-120b", "GPT-OSS 120B", 131_072, tools=True, reasoning=True),
        ),
    ),
    Provider(
        id="together",
        name="Together AI",
        protocol="openai",
        base_url="https://api.together.xyz/v1",
        api_key_env="TOGETHER_API_KEY",
        models=(
            M("meta-llama/Llama-3.3-70B-Instruct-Turbo", "Llama 3.3 70B Turbo", 131_072, tools=True),
            M("deepseek-ai/DeepSeek-R1", "DeepSeek R1", reasoning=True),
        ),
    ),
    Provider(
        id="deepseek",
        name="DeepSeek",
        protocol="openai",
        base_url="https://api.deepseek.com/v1",
        api_key_env="DEEPSEEK_API_KEY",
        models=(
            M("deepseek-chat", "DeepSeek Chat", 128_000, 8_192, tools=True),
            M("deepseek-reasoner", "DeepSeek Reasoner", 128_000, 65_536, tools=True, reasoning=True),
        ),
    ),
    Provider(
        id="mistral",
        name="Mistral",
        protocol="openai",
        base_url="https://api.mistral.ai/v1",
        api_key_env="MISTRAL_API_KEY",
        stream_usage=False,  # usage comes in the last chunk anyway
        models=(
            M("mistral-large-latest", "Mistral Large", tools=True),
            M("mistral-small-latest", "Mistral Small", tools=True),
        ),
    ),
    Provider(
        id="openrouter",
        name="OpenRouter",
        protocol="openai",
        base_url="https://openrouter.ai/api/v1",
        api_key_env="OPENROUTER_API_KEY",
        headers={"X-Title": "llm-sidecar"},  # OpenRouter's app attribution; set HTTP-Referer with configure_provider
        models=(M("openai/gpt-4o-mini", "GPT-4o mini (via OpenRouter)", 128_000, tools=True, vision=True),),
    ),
    Provider(
        id="xai",
        name="xAI",
        protocol="openai",
        base_url="https://api.x.ai/v1",
        api_key_env="XAI_API_KEY",
        models=(
            M("grok-4", "Grok 4", 256_000, tools=True, vision=True, reasoning=True),
            M("grok-3-mini", "Grok 3 mini", 131_072, tools=True, reasoning=True),
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
)
