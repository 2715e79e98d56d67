//! Chat formatting for instruct models.
//!
//! Only ChatML (`<|im_start|>role\ncontent<|im_end|>\n`, SmolLM2, Qwen) is implemented, with
//! the default system message that the model's Jinja template inserts when the conversation
//! has none. Templates in other formats are not recognised (no Jinja engine here).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: "user".into(), content: content.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    ChatMl {
        /// Inserted first when the conversation does not start with a system message.
        default_system: Option<String>,
    },
}

const START: &str = "<|im_start|>";
const END: &str = "<|im_end|>";

impl ChatTemplate {
    pub fn chatml(default_system: Option<String>) -> Self {
        Self::ChatMl { default_system }
    }

    /// Recognises a ChatML Jinja template, and the literal default system message in it.
    pub fn from_jinja(template: &str) -> Option<Self> {
        if !template.contains(START) || !template.contains(END) {
            return None;
        }
        let system_start = format!("{START}system\n");
        let default_system = template.find(&system_start).and_then(|at| {
            let rest = &template[at + system_start.len()..];
            let content = &rest[..rest.find(END)?];
            // A literal message, not an expression that splices the user's own system message.
            (!content.contains(['{', '}', '\'', '"', '+'])).then(|| content.to_string())
        });
        Some(Self::ChatMl { default_system })
    }

    /// The prompt for `messages`, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage]) -> String {
        let Self::ChatMl { default_system } = self;
        let mut prompt = String::new();
        let mut turn = |role: &str, content: &str| {
            prompt.push_str(&format!("{START}{role}\n{content}{END}\n"));
        };
        if let Some(system) = default_system.as_deref() {
            if messages.first().is_none_or(|m| m.role != "system") {
                turn("system", system);
            }
        }
        for message in messages {
            turn(&message.role, &message.content);
        }
        prompt.push_str(&format!("{START}assistant\n"));
        prompt
    }
}
