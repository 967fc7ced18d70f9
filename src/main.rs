use clap::Parser;

fn main() {
    let cli = tokenlens::cli::Cli::parse();
    std::process::exit(tokenlens::cli::run(cli));
}
