//! The `openeg` binary: thin glue over the workspace crates.

mod rules_cli;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "openeg", version, about = "Self-hosted, wire-compatible Huawei Cloud EventGrid")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Filter-rule tools: test rules against events, benchmark the matcher.
    #[command(subcommand)]
    Rules(rules_cli::RulesCmd),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Rules(cmd) => rules_cli::run(cmd),
    }
}
