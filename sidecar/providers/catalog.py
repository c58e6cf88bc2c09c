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
        models=(
            M("gpt-4.1", "GPT-4.1", 1_047_576, 32_768, tools=True, vision=True),
            M("gpt-4.1-mini", "GPT-4.1 mini", 1_047_576, 32_768, tools=True, vision=True),
            M("gpt-4o", "GPT-4o", 128_000, 16_384, tools=True, vision=True),
            M("gpt-4o-mini", "GPT-4o mini", 128_000, 16_384, tools=True, vision=True),
            M("o4-mini", "o4-mini", 200_000, 100_000, tools=True, vision=True, reasoning=True),
        ),
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
        id="llamacpp",
        name="llama.cpp server",
        protocol="openai",
        base_url="http://127.0.0.1:8080/v1",
        api_key_env="LLAMACPP_API_KEY",
        requires_api_key=False,
        is_local=True,
    ),
)
