//! Verify + parse + split of a typical 1 KB delivery: the CPU work of one
//! webhook acknowledgement before the store write.

use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretString;
use std::hint::black_box;
use whatsify::config::Key32;
use whatsify::crypto::pseudonym::Pseudonymizer;
use whatsify::crypto::seal::Sealer;
use whatsify::crypto::signature::{SignatureVerifier, sign};
use whatsify::domain::payload::parse;
use whatsify::webhook::events::split;

const SECRET: &str = "bench-app-secret-0123456789";

fn typical_body() -> Vec<u8> {
    let text = "Hello! I ordered the blue jacket last week and wanted to ask whether it can still be \
                exchanged for a larger size, and if so how I should send it back. Thanks a lot for \
                your help, the customer service has been great so far. Kind regards, and have a nice day!";
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"240017555501234","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001111","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"Ana Perez"}},"wa_id":"16505550101"}}],"messages":[{{"context":{{"from":"15550001111","id":"wamid.HBgLMTY1MDU1NTAxMDIVAgARGBIzNDI5QTM4MjE3QzcyNDAzMzkA"}},"from":"16505550101","id":"wamid.HBgLMTY1MDU1NTAxMDEVAgASGBRBMTA5NUMzMDE5MTZFMEZEQjIzMQA=","timestamp":"1764400000","type":"text","text":{{"body":"{text} {text}"}}}}]}},"field":"messages"}}]}}]}}"#
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let body = typical_body();
    let header = sign(SECRET, &body);
    let verifier = SignatureVerifier::new(SecretString::from(SECRET), None);
    let pseudo = Pseudonymizer::new(&Key32::new([5; 32]), None);
    let sealer = Sealer::new(&Key32::new([6; 32]));
    let mut group = c.benchmark_group(format!("webhook {} B", body.len()));
    group.bench_function("verify", |b| {
        b.iter(|| verifier.verify(Some(black_box(header.as_bytes())), black_box(&body)))
    });
    group.bench_function("verify+parse", |b| {
        b.iter(|| {
            verifier
                .verify(Some(header.as_bytes()), black_box(&body))
                .expect("valid");
            parse(black_box(&body)).expect("parses")
        })
    });
    let directory = whatsify::config::businesses::Directory::default_only();
    group.bench_function("verify+parse+split+seal", |b| {
        b.iter(|| {
            verifier
                .verify(Some(header.as_bytes()), black_box(&body))
                .expect("valid");
            let n = parse(black_box(&body)).expect("parses");
            for r in split(n, &pseudo, &directory, &Default::default(), 1_764_400_000) {
                let plain = serde_json::to_vec(&r.event).expect("json");
                black_box(
                    sealer
                        .seal(&plain, r.queue.name().as_bytes())
                        .expect("seal"),
                );
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
