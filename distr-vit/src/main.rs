//! `distr-vit`: run, evaluate and time pretrained ViTs with exact or DistrAttention.

mod cli;

use distr_attn::experiment::command_line::{ensure_runtime_dir, keep_freed_memory};

fn main() -> std::process::ExitCode {
    ensure_runtime_dir();
    keep_freed_memory();
    let cli = cli::Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|error| error.exit());
    match cli.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
