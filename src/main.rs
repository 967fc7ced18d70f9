use clap::Parser;

fn main() {
    tokenlens::memory::keep_freed_memory();
    let cli = tokenlens::cli::Cli::parse();
    std::process::exit(tokenlens::cli::run(cli));
}
