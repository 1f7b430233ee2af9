//! `openai-compatible`: any server with an OpenAI chat API (Ollama, LM Studio, vLLM,
//! llama.cpp, ...). `base_url` is required (e.g. `http://127.0.0.1:11434/v1`); a key is
//! optional and read from `api_key_env` when set.
