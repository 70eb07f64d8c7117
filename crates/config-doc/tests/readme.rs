//! deploy/README.md lists every setting of every service with its default and variable, as the
//! code has them now.

#[test]
fn the_production_guide_lists_every_setting_as_the_code_defines_it() -> anyhow::Result<()> {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/README.md"
    ))?;
    let tables = wmslink_config_doc::settings_tables()?;
    let expected = wmslink_config_doc::with_tables(&guide, &tables)?;
    assert!(
        guide == expected,
        "deploy/README.md's settings tables are out of date: run \
         `cargo run -p wmslink-config-doc -- --write`"
    );
    Ok(())
}
