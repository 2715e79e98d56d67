//! `distr-llama generate`

use std::error::Error;
use std::io::Write;

use clap::Args;
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
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling mass (with a temperature above 0).
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f64,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run<B: DistrAttentionBackend>(args: GenerateArgs, device: &B::Device) -> Result<(), Box<dyn Error>> {
    let pretrained = args.model.load::<B>(device)?;
    let plan = args.attention.plan()?;
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
    let mut sampler = Sampler::new(args.temperature, args.top_p, args.seed);
    let mut decode = tokenizer.decode_stream();
    print!("{prompt}");
    let (_, stats) = generate(
        &pretrained.model,
        &ids,
        args.max_tokens,
        tokenizer.stop_ids(),
        &mut sampler,
        &plan,
        device,
        |id| {
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
