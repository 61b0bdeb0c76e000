//! The tricks that keep statement capture cheap on the relay, in one
//! place, each beside the benchmark figure that pays for it.
//!
//! Capture runs for every statement every client sends, on the relay's
//! task. What it costs is not instructions but cache misses: memory a
//! session's task last wrote on the other core, or that the kernel's
//! network stack evicted in between (BENCHMARKS.md, "What touching fewer
//! cache lines changed (a29ada7)": the tracker's own work per transaction
//! is 108 ns with warm caches and ≈ 650 ns with cold ones). Each trick
//! below saves cache lines or clock reads on that path; none changes what
//! is counted or sampled.
//!
//! | trick | file | what it saves |
//! |---|---|---|
//! | per-thread counter shards | [`thread_shards`] | the shared counters' cache line travelling between cores per statement; a locked add (one writer: a plain load and store) |
//! | reply queue with its first four entries inline | [`inline_queue`] | a heap queue's own cache line, read back from memory for most replies |
//! | names boxed, so a reply entry is 16 bytes | [`boxed_name`] | bytes written per queued reply |
//! | the statement bound last, name and facts inline (`LastBound`) | [`last_bound`] | hashing the name and reading the statement per Bind |
//! | equal skips counted as a run before the tally | [`skip_run`] | a hash lookup per skip |
//! | the skip-flush clock read at every 16th idle ReadyForQuery | [`idle_clock`] | a clock read per transaction |
//! | the sampler's switches in one cache-aligned block | `shadow/sampler.rs` (`Switches`), not here: it is the sampler's own state | lines read per sampling decision |
//!
//! The figures (BENCHMARKS.md, same section; not measured one trick at a
//! time):
//! - counter shards, inline reply queue, 16-byte entries, `LastBound` and
//!   the sampler's switch block came together in a29ada7 (with the
//!   execution count that stops at `first_executions` and a per-session
//!   random source): the capture cost at `sample_rate = 0` went from
//!   +1.25 to +0.81 µs of proxy CPU per transaction over shadow off, and
//!   at 1 % from ≈ +1.35 to +0.90 µs; saturated, the 1 % paired TPS
//!   ratio rose from 0.943 ± 0.014 (e6f6188, pooled) to 0.991 ± 0.023
//!   (pooled, 56 rounds), part of it likely the machine's drift.
//! - boxing the sample ticket alone (reply entries ≈ 88 → ≈ 32 bytes),
//!   measured before a29ada7: no measurable change (not adopted then).
//! - the skip run and the idle clock: no figure recorded.

pub(super) mod boxed_name;
pub(super) mod idle_clock;
pub(super) mod inline_queue;
pub(super) mod last_bound;
pub(super) mod skip_run;
pub(super) mod thread_shards;
