//! One signal that something served may have changed (a reload, an event,
//! a plugin's store), for the long-polls parked on a flavour listener: they
//! wake, ask again, and go back to waiting when their value is the same.

use tokio::sync::watch;

pub struct Changes(watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl Changes {
    /// Wakes every waiter, now or (if none waits yet) at its next wait.
    pub fn notify(&self) {
        self.0
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// A receiver that sees every change after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}
