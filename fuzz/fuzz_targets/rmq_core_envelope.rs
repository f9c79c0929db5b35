#![no_main]

// The envelope frame every broker stores and carries: any bytes decode to an
// envelope or an error, and what decodes encodes back to the same envelope.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(env) = rmq_core::Envelope::decode(data, 64 * 1024) {
        let again = rmq_core::Envelope::decode(&env.encode(), 64 * 1024).expect("re-decode");
        assert_eq!(again, env);
    }
});
