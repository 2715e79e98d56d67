//! `distr-llama generate`

use std::error::Error;
use std::io::Write;

use clap::Args;
use distr_attn::experiment::progress::announce;
use distr_attn::experiment::require;
use distr_attn::DistrAttentionBackend;

use crate::cli::{AttentionArgs, ModelArgs};
use crate::error::LlamaError;
use crate::generation::generate;
use crate::sampling::Sampler;
use crate::tokenizer::{ChatMessage, Tokenizer};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub attention: AttentionArgs,
    /// Raw prompt text (special tokens such as `<|im_start|>` are recognised).
    #[arg(long, conflicts_with = "chat", required_unless_present = "chat")]
    pub prompt: Option<String>,
    /// A user message, formatted with the model's chat template.
    #[arg(long)]
    pub chat: Option<String>,
    /// Most tokens to generate (fewer when the model's context ends first).
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling mass (with a temperature above 0).
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f64,
    /// Seed of the sampler (with a temperature above 0).
    #[arg(long, alias = "seed", default_value_t = 0)]
    pub sampler_seed: u64,
}

impl GenerateArgs {
    fn validate(&self) -> Result<(), distr_attn::experiment::ExperimentError> {
        require(self.max_tokens >= 1, "--max-tokens", self.max_tokens, "expected at least 1")?;
        require(
            self.temperature >= 0.0 && self.temperature.is_finite(),
            "--temperature",
            self.temperature,
            "expected a finite number, at least 0 (0 is greedy)",
        )?;
        require(self.top_p > 0.0 && self.top_p <= 1.0, "--top-p", self.top_p, "expected a probability in (0, 1]")
    }
}

pub fn run<B: DistrAttentionBackend>(args: GenerateArgs, device: &B::Device) -> Result<(), Box<dyn Error>> {
    args.validate()?;
    let plan = args.attention.plan()?;
    let pretrained = args.model.load::<B>(&plan, device)?;
    let tokenizer = &pretrained.tokenizer;
    let prompt = match (&args.prompt, &args.chat) {
        (Some(prompt), _) => prompt.clone(),
        (None, Some(message)) => tokenizer
            .chat_template()
            .ok_or_else(|| LlamaError::Tokenizer("this model has no ChatML chat template: use --prompt".into()))?
            .render(&[ChatMessage::user(message.clone())]),
        (None, None) => return Err("give --prompt or --chat".into()),
    };
    let ids = tokenizer.encode(&prompt)?;
    let max_seq_len = pretrained.model.max_seq_len;
    if ids.len() > max_seq_len {
        return Err(LlamaError::Context { tokens: ids.len(), max: max_seq_len }.into());
    }
    // The last generated token is never fed back, so it takes no position.
    let max_tokens = args.max_tokens.min(max_seq_len + 1 - ids.len());
    if max_tokens < args.max_tokens {
        eprintln!(
            "generating at most {max_tokens} tokens: the prompt's {} tokens leave no more room in the context of {max_seq_len}",
            ids.len()
        );
    }
    let mut sampler = Sampler::new(args.temperature, args.top_p, args.sampler_seed);
    let mut decode = tokenizer.decode_stream();
    // The prefill is silent until the first token: say what runs, and show that it does.
    let mut prefill = Some(announce(&format!("prefill of {} prompt tokens", ids.len()), args.model.device.backend, false));
    let (_, stats) = generate(
        &pretrained.model,
        &ids,
        max_tokens,
        tokenizer.stop_ids(),
        &mut sampler,
        device,
        |id| {
            if let Some(spinner) = prefill.take() {
                spinner.finish();
                print!("{prompt}");
            }
            if let Some(text) = decode(id)? {
                print!("{text}");
                std::io::stdout().flush().map_err(LlamaError::io("stdout"))?;
            }
            Ok(())
        },
    )?;
    println!();
    eprintln!(
        "prefill: {} tokens in {:.3} s ({:.1} tokens/s); decode: {} tokens in {:.3} s ({:.1} tokens/s)",
        stats.prompt_tokens,
        stats.prefill_seconds,
        stats.prefill_tokens_per_second(),
        stats.generated_tokens.saturating_sub(1),
        stats.decode_seconds,
        stats.decode_tokens_per_second()
    );
    Ok(())
}
