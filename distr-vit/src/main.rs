//! `distr-vit`: run, evaluate and time pretrained ViTs with exact or DistrAttention.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    match cli::Cli::parse().run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
