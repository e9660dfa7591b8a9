#![no_main]
//! cbacc's host-meta readers (RFC 6415): the XRD form (quick-xml) and the JSON form, which find
//! the RESTCONF root link. Oracle: never panics.
use cbacc::metadata::{host_meta_json, host_meta_xml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = host_meta_xml(text);
    let _ = host_meta_json(text);
});
