//! Misbehaves on request, so the tests can check that the host contains it:
//! each path below the mount is one way for a plugin to go wrong.

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../../wit/v0.1.0" });

use std::hint::black_box;

use ersatz::plugin::types::{Leaf, Request, Response};
use exports::ersatz::plugin::provider::Guest;

struct Misbehave;

impl Guest for Misbehave {
    fn resolve(request: Request) -> Result<Response, String> {
        match request.path.as_str() {
            "" => Ok(Response::Directory(
                ["alloc", "error", "loop", "ok", "sleep", "trap"]
                    .map(String::from)
                    .into(),
            )),
            // A panic aborts, which is a trap on wasm.
            "trap" => panic!("asked to trap"),
            // black_box keeps the optimiser from proving the loop idle.
            "loop" => loop {
                black_box(());
            },
            "alloc" => {
                let mut hoard = Vec::new();
                loop {
                    // Non-zero bytes, so every page is really written; the
                    // hoard escapes through black_box, so none is elided.
                    hoard.push(vec![0xa5u8; 1 << 20]);
                    black_box(&hoard);
                }
            }
            // Blocks in the host (a WASI clock poll), where no epoch
            // tick interrupts it: only the call's deadline can.
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Err("slept an hour".into())
            }
            "error" => Err("asked to fail".into()),
            "ok" => Ok(Response::Leaf(Leaf {
                body: b"fine".to_vec(),
                content_type: "text/plain".into(),
            })),
            _ => Ok(Response::NotFound),
        }
    }
}

export!(Misbehave);
