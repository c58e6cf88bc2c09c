/** The AI SDK provider's name (`model.provider`) and the key of its `providerOptions` and `providerMetadata`. */
export const PROVIDER_KEY = "sidecar";
