//! `zai`: Zhipu / Z.AI GLM models over their OpenAI-compatible API, key in ZAI_API_KEY.
//!
//! Default base is the seed's `https://open.bigmodel.cn/api/paas/v4`; international
//! accounts use `https://api.z.ai/api/paas/v4` (set `base_url` or ZAI_API_BASE_URL).
//! Streams reasoning as `delta.reasoning_content`, which the chat decoder reads.
