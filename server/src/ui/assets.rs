//! The embedded files, by the name they are served under (below [`super::prefix`]).

pub(super) const ALL: &[(&str, &[u8])] = &[
    ("ferry.css", include_bytes!("assets/ferry.css")),
    ("listing.js", include_bytes!("assets/listing.js")),
    ("rows.js", include_bytes!("assets/rows.js")),
    ("i18n.js", include_bytes!("assets/i18n.js")),
    ("upload.js", include_bytes!("assets/upload.js")),
    ("uploader.js", include_bytes!("assets/uploader.js")),
    ("tusapi.js", include_bytes!("assets/tusapi.js")),
    ("checksum.js", include_bytes!("assets/checksum.js")),
    ("drop.js", include_bytes!("assets/drop.js")),
    ("login.js", include_bytes!("assets/login.js")),
    ("hash-worker.js", include_bytes!("assets/hash-worker.js")),
    ("sum-worker.js", include_bytes!("assets/sum-worker.js")),
    ("blob-chunks.js", include_bytes!("assets/blob-chunks.js")),
    ("vendor/tus.min.js", include_bytes!("vendor/tus.min.js")),
    (
        "vendor/hash-wasm-sha256.umd.min.js",
        include_bytes!("vendor/hash-wasm-sha256.umd.min.js"),
    ),
    (
        "vendor/hash-wasm-crc32.umd.min.js",
        include_bytes!("vendor/hash-wasm-crc32.umd.min.js"),
    ),
    (
        "vendor/tus-js-client.LICENSE.txt",
        include_bytes!("vendor/tus-js-client.LICENSE.txt"),
    ),
    (
        "vendor/hash-wasm.LICENSE.txt",
        include_bytes!("vendor/hash-wasm.LICENSE.txt"),
    ),
];
