//! `medledger verify`: offline audit of a data directory.

use std::path::Path;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use medledger_ledger::{
    LedgerError,
    verify::{Stage, verify_ledger},
};
use medledger_node::DataDir;

pub fn run(data_dir: &Path) -> Result<()> {
    let dir = DataDir::new(data_dir);
    if dir.in_use() {
        bail!(
            "the node is running (its data directory {} is in use); stop it first",
            data_dir.display()
        );
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>22} [{bar:40}] {pos}/{len} blocks ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut current = None;
    let result = verify_ledger(&dir.ledger(), &mut |stage, done, total| {
        if current != Some(stage) {
            current = Some(stage);
            bar.set_length(total);
            bar.set_message(match stage {
                Stage::Chain => "hash chain and roots",
                Stage::Replay => "signatures and replay",
            });
        }
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            println!(
                "ledger OK: chain {:?}, {} blocks, {} transactions ({} applied, {} refused), every signature valid, replay matches stored state, log root {}",
                report.chain_id,
                report.blocks,
                report.transactions,
                report.applied,
                report.refused,
                report.log_root
            );
            Ok(())
        }
        // Not a verdict on the ledger: a running node, an unclean stop, no ledger at all.
        Err(LedgerError::Setup(message)) => bail!("{message}"),
        Err(e) => bail!("ledger verification FAILED for {}: {e}", dir.ledger().display()),
    }
}
