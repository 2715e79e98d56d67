use clap::Parser;
use distr_llama::cli::{run, Cli};

fn main() {
    if let Err(error) = run(Cli::parse()) {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
