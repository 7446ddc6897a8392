//! Load for `bench/seal.sh`: PAdES sealing through the SDK, as an
//! integrating system calls it (`TrustServices::seal_pdf`: the document
//! goes up once, only the update comes back and is appended here). Each
//! client reads the input from disk and writes the sealed document to its
//! own output file for every document, as pyHanko does beside it.
//!
//! usage: seal_load ISSUER ROOT.pem OFFICER.p12 PASSWORD SEAL INPUT.pdf LEVEL ROUNDS OUT_DIR PARALLEL [SERVER_PID]
use std::rc::Rc;
use std::time::{Duration, Instant};

use kexin_bench::server_cpu_seconds;

use kexin_sdk::client::{Pkcs12Identity, TrustServices};

struct Job {
    seal: String,
    input: String,
    level: String,
    out_dir: String,
}

impl Job {
    async fn seal_one(&self, services: &TrustServices, client: usize) {
        let pdf = std::fs::read(&self.input).unwrap();
        let sealed = services
            .seal_pdf(&self.seal, pdf, &self.level)
            .await
            .unwrap();
        std::fs::write(format!("{}/s-{client}.pdf", self.out_dir), sealed).unwrap();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    assert!(a.len() >= 11, "usage: seal_load ISSUER ROOT.pem OFFICER.p12 PASSWORD SEAL INPUT.pdf LEVEL ROUNDS OUT_DIR PARALLEL [SERVER_PID]");
    let root = std::fs::read(&a[2]).unwrap();
    let identity = Pkcs12Identity::from_pkcs12(&std::fs::read(&a[3]).unwrap(), &a[4]).unwrap();
    let (seal, input, level) = (a[5].clone(), a[6].clone(), a[7].clone());
    let rounds: usize = a[8].parse().unwrap();
    let out_dir = a[9].clone();
    let parallel: usize = a[10].parse().unwrap();
    let server: Option<u32> = a.get(11).and_then(|p| p.parse().ok());

    let job = Rc::new(Job {
        seal,
        input,
        level,
        out_dir,
    });
    let clients: Vec<_> = (0..parallel)
        .map(|_| Rc::new(TrustServices::new(&a[1], &identity, &root).unwrap()))
        .collect();
    // One untimed document per client: its TLS connection and the
    // server's lazy set-up, as pyHanko's first signature is untimed too.
    for (c, services) in clients.iter().enumerate() {
        job.seal_one(services, c).await;
    }

    let cpu_before = server_cpu_seconds(server);
    let start = Instant::now();
    let tasks = tokio::task::LocalSet::new();
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, services)| {
            let job = job.clone();
            tasks.spawn_local(async move {
                let mut latencies = Vec::with_capacity(rounds);
                for _ in 0..rounds {
                    let t = Instant::now();
                    job.seal_one(&services, c).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = tasks
        .run_until(async move {
            let mut all = Vec::new();
            for h in handles {
                all.extend(h.await.unwrap());
            }
            all
        })
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = server_cpu_seconds(server)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    all.sort();
    let median_ms = all[all.len() / 2].as_secs_f64() * 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "docs_per_s": ((all.len() as f64 / elapsed) * 100.0).round() / 100.0,
            "p50_ms": (median_ms * 100.0).round() / 100.0,
            "server_cpu_ms_per_doc": cpu.map(|c| (c * 1000.0 / all.len() as f64 * 100.0).round() / 100.0),
        })
    );
}
