use distr_attn::experiment::command_line::{ensure_runtime_dir, keep_freed_memory};
use distr_llama::cli::{run, Cli};

fn main() {
    ensure_runtime_dir();
    keep_freed_memory();
    let cli = Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|error| error.exit());
    if let Err(error) = run(cli) {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
