//! Identifiers that look like AWS's: deterministic within a run, distinct across calls.

/// A generator of ids, seeded once per simulator.
#[derive(Debug)]
pub struct Ids {
    state: u64,
}

impl Ids {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 pseudo-random bits (splitmix64).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 32 lowercase hex digits, like an ECS task id.
    pub fn hex32(&mut self) -> String {
        format!("{:016x}{:016x}", self.next_u64(), self.next_u64())
    }

    /// A UUID-shaped id (request ids, event ids).
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// An ECS deployment id: `ecs-svc/` and 19 digits.
    pub fn deployment_id(&mut self) -> String {
        format!(
            "ecs-svc/{:019}",
            self.next_u64() % 10_000_000_000_000_000_000
        )
    }
}
