//! `openeg rules test|bench` (STUB; filled in by the rule-engine work).

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum RulesCmd {
    /// Which rules match one event, and why a rule does not.
    Test {
        #[arg(long)]
        rules: std::path::PathBuf,
        #[arg(long)]
        event: std::path::PathBuf,
    },
}

pub fn run(cmd: RulesCmd) -> anyhow::Result<()> {
    match cmd {
        RulesCmd::Test { .. } => anyhow::bail!("not implemented yet"),
    }
}
