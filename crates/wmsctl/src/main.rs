//! `wmsctl`: see the crate documentation and README.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = wmslink_wmsctl::cli::Cli::parse();
    let code = wmslink_wmsctl::run(cli).await;
    std::process::exit(code);
}
