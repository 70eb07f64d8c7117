//! Prints the settings tables of deploy/README.md, or with `--write` puts them into it.

fn main() -> anyhow::Result<()> {
    let tables = wmslink_config_doc::settings_tables()?;
    if std::env::args().any(|arg| arg == "--write") {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/README.md");
        let guide = std::fs::read_to_string(path)?;
        std::fs::write(path, wmslink_config_doc::with_tables(&guide, &tables)?)?;
        println!("deploy/README.md updated");
    } else {
        print!("{tables}");
    }
    Ok(())
}
