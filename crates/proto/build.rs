//! Compiles every `.proto` under the workspace's `proto/` with protox (pure Rust, no system
//! `protoc`), generates tonic/prost code and saves the descriptor set for reflection and JSON.

use std::path::{Path, PathBuf};

fn proto_files(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            proto_files(&path, found)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            found.push(path);
        }
    }
    Ok(())
}

fn type_names() -> tonic_prost_build::Config {
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    config
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let mut files = Vec::new();
    proto_files(&root, &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("wmslink_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Messages that carry a WMS access key get a hand-written, redacting Debug (src/redact.rs).
        .skip_debug([
            "wmslink.settings.v1.RegisterSettingsRequest",
            "wmslink.settings.v1.CheckConnectionRequest",
        ])
        .build_client(true)
        .build_server(true)
        // `prost::Name` on every message: consumers decode proto3 JSON by the type's full name.
        .compile_fds_with_config(descriptors, type_names())?;
    Ok(())
}
