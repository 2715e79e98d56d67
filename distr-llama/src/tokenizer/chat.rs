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
        /// The Jinja source: the model's own, or one written for this format.
        jinja: String,
    },
}

const START: &str = "<|im_start|>";
const END: &str = "<|im_end|>";

impl ChatTemplate {
    /// ChatML with `default_system`; its Jinja source is written in the form of SmolLM2's.
    pub fn chatml(default_system: Option<String>) -> Self {
        let system = default_system.as_deref().map_or(String::new(), |system| {
            let literal = system.replace('\\', "\\\\").replace('\'', "\\'");
            format!(
                "{{% if loop.first and messages[0]['role'] != 'system' %}}{{{{ '{START}system\n{literal}{END}\n' }}}}{{% endif %}}"
            )
        });
        let jinja = format!(
            "{{% for message in messages %}}{system}{{{{'{START}' + message['role'] + '\n' + message['content'] + '{END}' + '\n'}}}}{{% endfor %}}{{% if add_generation_prompt %}}{{{{ '{START}assistant\n' }}}}{{% endif %}}"
        );
        Self::ChatMl { default_system, jinja }
    }

    /// The Jinja source, as `tokenizer_config.json` stores it under `chat_template`.
    pub fn jinja(&self) -> &str {
        let Self::ChatMl { jinja, .. } = self;
        jinja
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
        Some(Self::ChatMl { default_system, jinja: template.to_string() })
    }

    /// The prompt for `messages`, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage]) -> String {
        let Self::ChatMl { default_system, .. } = self;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as its GGUF metadata holds it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn written_chatml_reads_back_as_the_same_template() {
        let parsed = ChatTemplate::from_jinja(SMOLLM2).unwrap();
        let ChatTemplate::ChatMl { default_system, .. } = &parsed;
        assert_eq!(default_system.as_deref(), Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
        assert_eq!(parsed.jinja(), SMOLLM2);
        // The template written for a default system message is SmolLM2's, character for character.
        assert_eq!(ChatTemplate::chatml(default_system.clone()).jinja(), SMOLLM2);
        for template in [ChatTemplate::chatml(None), ChatTemplate::chatml(Some("Be brief.".into()))] {
            assert_eq!(ChatTemplate::from_jinja(template.jinja()).as_ref(), Some(&template));
        }
        let messages = [ChatMessage::user("Hi")];
        assert_eq!(
            ChatTemplate::chatml(None).render(&messages),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
