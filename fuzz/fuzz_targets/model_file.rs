//! The native model file (`.gcm`), as the predictor loads it from disk or a
//! bucket and retrain loads its champion: a JSON header line, then the JSON
//! payload it checksums.
//!
//! Each input is read twice: as a whole file, and as a payload behind a
//! header that matches it (length and sha256), since random bytes would
//! otherwise never get past the checksum to the trees. A model that loads
//! must save and load back the same, and its compiled forest must predict
//! what walking the trees does ([`gridcast_fuzz::check_model`]). A header's
//! signature, if any, is parsed and checked against a fixed key, as a
//! predictor with trusted keys does: an error, never a panic.
#![no_main]

use gridcast_core::model::Model;
use gridcast_core::model::signature::{self, SigningKey};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    load(data, data);
    let header = format!(
        r#"{{"format":"gridcast-model","format_version":1,"payload_len":{},"payload_sha256":"{}"}}"#,
        data.len(),
        hex::encode(Sha256::digest(data))
    );
    let mut file = header.into_bytes();
    file.push(b'\n');
    file.extend_from_slice(data);
    load(&file, data);
});

fn load(file: &[u8], data: &[u8]) {
    let trusted = SigningKey::from_seed(&[7; 32]).public_key();
    if let Err(e) = signature::verify(file, &[trusted]) {
        let _ = (e.to_string(), e.reason());
    }
    match Model::from_bytes(file) {
        Ok(model) => gridcast_fuzz::check_model(&model, data),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
