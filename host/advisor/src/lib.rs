//! LLM post-optimisation for the edgehost decision engine: a
//! [`Refiner`](edgehost_placement::Refiner) that asks a large language model,
//! through any OpenAI-compatible `/v1/chat/completions` endpoint, to improve
//! the ant colony's placement or migration plan.
//!
//! Main types: [`AdvisorConfig`] (endpoint, model, name of the environment
//! variable holding the API key, timeout) and [`LlmRefiner`]. The prompt
//! ([`prompt`]) shows the instance, the constraints and the colony's plan;
//! the answer ([`answer`]) must be one JSON object
//! `{"placement": {"<agent>": "<server>", ...}, "rationale": "..."}`.
//!
//! This crate only asks and parses. Whether a proposal is used is decided
//! by `edgehost_placement::refine`, which accepts it only if it is feasible
//! and not worse; every failure here (timeout, refused connection, HTTP
//! error, malformed answer) becomes an error that leaves the colony's plan
//! in place. It uses reqwest's blocking client, so call it from a plain
//! thread, not from inside an async runtime.

pub mod answer;
pub mod prompt;

use std::time::Duration;

use edgehost_placement::Plan;
use edgehost_placement::refine::{RefineRequest, Refiner};
use serde_json::{Value, json};

/// Everything that can go wrong asking the LLM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable.
    #[error("invalid advisor configuration: {0}")]
    Config(String),
    /// The request did not complete (refused, unreachable, timed out).
    #[error("request to the LLM endpoint failed: {0}")]
    Http(#[source] reqwest::Error),
    /// The endpoint answered with an HTTP error.
    #[error("LLM endpoint answered HTTP {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer is not a chat completion holding a plan of the agreed shape.
    #[error("malformed LLM answer: {0}")]
    Malformed(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for edgehost_placement::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Malformed(m) => Self::RefinerAnswer(m),
            Error::Http(e) if e.is_timeout() => Self::RefinerUnavailable(format!("timed out: {e}")),
            other => Self::RefinerUnavailable(other.to_string()),
        }
    }
}

/// Where and how to ask.
#[derive(Clone, Debug, PartialEq)]
pub struct AdvisorConfig {
    /// Base URL of the OpenAI-compatible server (`http://127.0.0.1:8000`,
    /// `https://api.openai.com`); `/v1/chat/completions` is appended unless
    /// the URL already ends in `/chat/completions`.
    pub endpoint: String,
    /// Model name sent in the request.
    pub model: String,
    /// Name of the environment variable that holds the API key; no
    /// `Authorization` header is sent when it is `None` or unset.
    pub api_key_env: Option<String>,
    /// Whole-request timeout; a slower answer leaves the colony's plan.
    pub timeout: Duration,
    /// Ask for a JSON object response (`response_format`), which most
    /// compatible servers support.
    pub json_mode: bool,
}

impl AdvisorConfig {
    /// A configuration with a 20 s timeout, JSON mode on and the key in
    /// `OPENAI_API_KEY`.
    pub fn new(endpoint: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            model: model.into(),
            api_key_env: Some("OPENAI_API_KEY".into()),
            timeout: Duration::from_secs(20),
            json_mode: true,
        }
    }

    /// The full chat-completions URL.
    pub fn url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/v1/chat/completions")
        }
    }
}

/// A client of an OpenAI-compatible chat-completions endpoint. Blocking:
/// call it from a thread that may block, never from async code.
#[derive(Debug, Clone)]
pub struct ChatClient {
    config: AdvisorConfig,
    client: reqwest::blocking::Client,
}

/// One chat message.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatClient {
    /// Builds the HTTP client.
    pub fn new(config: AdvisorConfig) -> Result<Self> {
        if config.model.trim().is_empty() {
            return Err(Error::Config("the model name is empty".into()));
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(Error::Http)?;
        Ok(Self { config, client })
    }

    /// The configuration in use.
    pub fn config(&self) -> &AdvisorConfig {
        &self.config
    }

    /// Sends `messages` and returns the text of the first choice.
    /// `temperature` defaults to 0 (deterministic where the server allows);
    /// `json` asks for a JSON object answer when the configuration allows it.
    pub fn complete(
        &self,
        messages: &[ChatMessage],
        max_tokens: Option<u32>,
        temperature: Option<f32>,
        json: bool,
    ) -> Result<String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| json!({ "role": m.role, "content": m.content }))
            .collect();
        let mut body = json!({
            "model": self.config.model,
            "temperature": temperature.unwrap_or(0.0),
            "messages": messages,
        });
        if let Some(max) = max_tokens {
            body["max_tokens"] = json!(max);
        }
        if json && self.config.json_mode {
            body["response_format"] = json!({ "type": "json_object" });
        }
        let mut http = self.client.post(self.config.url()).json(&body);
        if let Some(key) = self
            .config
            .api_key_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|k| !k.is_empty())
        {
            http = http.bearer_auth(key);
        }
        let response = http.send().map_err(Error::Http)?;
        let status = response.status();
        let text = response.text().map_err(Error::Http)?;
        if !status.is_success() {
            return Err(Error::Status {
                status: status.as_u16(),
                body: text.chars().take(200).collect(),
            });
        }
        let completion: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Malformed(format!("not a JSON chat completion: {e}")))?;
        completion["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Malformed("no choices[0].message.content".into()))
    }
}

/// The most tokens an answer for `agents` agents may take: a
/// `"agent": "server"` pair costs about a dozen tokens, with room for the
/// rationale. A model that does not stop (small ones often repeat
/// themselves) is cut off here and its answer fails to parse, instead of
/// generating until the request times out.
fn answer_token_budget(agents: usize) -> u32 {
    let agents = u32::try_from(agents).unwrap_or(u32::MAX);
    agents.saturating_mul(24).saturating_add(192).min(16_384)
}

/// A refiner backed by a chat-completions endpoint.
#[derive(Debug, Clone)]
pub struct LlmRefiner {
    chat: ChatClient,
}

impl LlmRefiner {
    /// Builds the HTTP client.
    pub fn new(config: AdvisorConfig) -> Result<Self> {
        Ok(Self {
            chat: ChatClient::new(config)?,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &AdvisorConfig {
        self.chat.config()
    }

    /// Sends the request and returns the proposed plan and the model's
    /// rationale.
    pub fn ask(&self, request: &RefineRequest<'_>) -> Result<(Plan, Option<String>)> {
        let (system, user) = prompt::messages(request);
        let messages = [
            ChatMessage {
                role: "system".into(),
                content: system,
            },
            ChatMessage {
                role: "user".into(),
                content: user,
            },
        ];
        let budget = answer_token_budget(request.instance.agents.len());
        let content = self.chat.complete(&messages, Some(budget), None, true)?;
        answer::parse(request.instance, &content)
    }
}

impl Refiner for LlmRefiner {
    fn name(&self) -> &str {
        &self.chat.config().model
    }

    fn refine(&self, request: &RefineRequest<'_>) -> edgehost_placement::Result<Plan> {
        self.ask(request).map(|(plan, _)| plan).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_is_completed_once() {
        let mut c = AdvisorConfig::new("http://127.0.0.1:9/", "m");
        assert_eq!(c.url(), "http://127.0.0.1:9/v1/chat/completions");
        c.endpoint = "http://h/v1/chat/completions".into();
        assert_eq!(c.url(), "http://h/v1/chat/completions");
    }

    #[test]
    fn empty_model_is_refused() {
        assert!(matches!(
            LlmRefiner::new(AdvisorConfig::new("http://127.0.0.1:9", " ")),
            Err(Error::Config(_))
        ));
    }
}
