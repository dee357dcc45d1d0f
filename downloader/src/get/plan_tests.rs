//! Tests of [`super`] (segment planning, work stealing, end-game races).

use super::*;
use crate::get::ranges::RangeSet;

fn r(start: u64, end: u64) -> ByteRange {
    ByteRange::new(start, end).unwrap()
}

fn never(_: WorkerId) -> bool {
    false
}

#[test]
fn initial_split_is_even_and_respects_min_split() {
    assert_eq!(
        initial_split(&[r(0, 100)], 4, 1),
        vec![r(0, 25), r(25, 50), r(50, 75), r(75, 100)]
    );
    // 100 bytes, min 40: only two pieces of 50.
    assert_eq!(
        initial_split(&[r(0, 100)], 8, 40),
        vec![r(0, 50), r(50, 100)]
    );
    // Smaller than min_split: one piece.
    assert_eq!(initial_split(&[r(0, 10)], 8, 40), vec![r(0, 10)]);
    // Uneven lengths: first pieces one byte longer.
    assert_eq!(
        initial_split(&[r(0, 10)], 3, 1),
        vec![r(0, 4), r(4, 7), r(7, 10)]
    );
}

#[test]
fn initial_split_of_resume_gaps_keeps_small_gaps_whole() {
    let gaps = [r(0, 10), r(100, 1100)];
    let split = initial_split(&gaps, 4, 100);
    assert_eq!(split[0], r(0, 10));
    assert_eq!(split.len(), 4);
    assert_eq!(RangeSet::from_ranges(split).covered(), 1010);
}

/// Property: for random inputs, pieces are disjoint, cover the input exactly, number at
/// most `connections` plus the small gaps, and are never below min_split unless the
/// range they come from is.
#[test]
fn initial_split_properties() {
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..2000 {
        let mut missing = Vec::new();
        let mut pos = 0;
        for _ in 0..rng.usize(1..5) {
            let start = pos + rng.u64(0..1000);
            let end = start + rng.u64(1..100_000);
            missing.push(r(start, end));
            pos = end;
        }
        let conns = rng.usize(1..65);
        let min_split = rng.u64(1..50_000);
        let split = initial_split(&missing, conns, min_split);
        let small = missing.iter().filter(|m| m.len() < min_split).count();
        assert!(
            split.len() <= conns + small + missing.len(),
            "{missing:?} {conns} {min_split}"
        );
        assert_eq!(
            RangeSet::from_ranges(split.clone()),
            RangeSet::from_ranges(missing.clone())
        );
        let total: u64 = split.iter().map(ByteRange::len).sum();
        assert_eq!(
            total,
            missing.iter().map(ByteRange::len).sum::<u64>(),
            "overlap"
        );
        for p in &split {
            let from = missing
                .iter()
                .find(|m| m.start <= p.start && p.end <= m.end)
                .unwrap();
            assert!(p.len() >= min_split.min(from.len()), "{p:?} from {from:?}");
        }
    }
}

#[test]
fn finished_worker_steals_second_half_of_largest() {
    let mut plan = Plan::with_min_steal(&[r(0, 400)], 2, 1, 10);
    assert_eq!(plan.next(0, &never), Some(r(0, 200)));
    assert_eq!(plan.next(1, &never), Some(r(200, 400)));
    assert_eq!(plan.claim(0, 0, 200), 200);
    assert_eq!(plan.claim(1, 200, 20), 20);
    plan.release(0, 200);
    // Worker 1 has 220..400 left: 180 bytes, the thief takes 310..400.
    assert_eq!(plan.next(0, &never), Some(r(310, 400)));
    assert_eq!(plan.end_of(1), Some(310));
    // The victim may write only up to its new end.
    assert_eq!(plan.claim(1, 220, 100), 90);
    assert_eq!(plan.claim(1, 310, 5), 0);
}

#[test]
fn end_at_drops_everything_past_the_end() {
    let mut plan = Plan::with_min_steal(&[r(0, u64::MAX)], 1, 1, 10);
    assert_eq!(plan.next(0, &never), Some(r(0, u64::MAX)));
    assert_eq!(plan.claim(0, 0, 500), 500);
    plan.end_at(500);
    plan.release(0, 500);
    assert!(plan.is_done());
    assert_eq!(plan.remaining(), 0);
}

#[test]
fn no_steal_below_min_steal() {
    let mut plan = Plan::with_min_steal(&[r(0, 100)], 1, 1, 60);
    assert_eq!(plan.next(0, &never), Some(r(0, 100)));
    assert_eq!(
        plan.next(1, &never),
        None,
        "100 bytes cannot give two halves of 60"
    );
}

#[test]
fn release_requeues_unwritten_bytes() {
    let mut plan = Plan::with_min_steal(&[r(0, 100)], 1, 1, 1000);
    assert_eq!(plan.next(0, &never), Some(r(0, 100)));
    assert_eq!(plan.claim(0, 0, 30), 30);
    plan.release(0, 30);
    assert_eq!(plan.remaining(), 70);
    assert_eq!(plan.next(1, &never), Some(r(30, 100)));
    plan.release(1, 100); // nothing claimed: all of it goes back
    assert_eq!(plan.remaining(), 70);
    assert_eq!(plan.next(1, &never), Some(r(30, 100)));
    assert_eq!(plan.claim(1, 30, 70), 70);
    plan.release(1, 100);
    assert!(plan.is_done());
}

#[test]
fn claim_at_wrong_offset_or_by_idle_worker_is_refused() {
    let mut plan = Plan::with_min_steal(&[r(0, 100)], 1, 1, 10);
    assert_eq!(plan.claim(0, 0, 10), 0);
    plan.next(0, &never);
    assert_eq!(plan.claim(0, 5, 10), 0);
    assert_eq!(plan.claim(0, 0, 10), 10);
}

/// Issue 15 §3: an idle worker races a stalled holder for the rest of its segment; the
/// first claim wins everything left, the loser gets nothing more and is named.
#[test]
fn idle_worker_races_a_stalled_holder_and_the_first_claim_wins() {
    let mut plan = Plan::with_min_steal(&[r(0, 400)], 2, 1, 10);
    assert_eq!(plan.next(0, &never), Some(r(0, 200)));
    assert_eq!(plan.next(1, &never), Some(r(200, 400)));
    assert_eq!(plan.claim(0, 0, 200), 200);
    assert_eq!(plan.claim(1, 200, 50), 50);
    plan.release(0, 200);
    // Worker 1 went silent at 250: worker 0 races it for all of 250..400, no halving.
    let stalled = |w: WorkerId| w == 1;
    assert_eq!(plan.next(0, &stalled), Some(r(250, 400)));
    assert_eq!(plan.remaining(), 150, "a raced range counts once");
    // A third worker finds nothing: a racing pair is not stolen from, nor raced again while
    // the racer is not silent.
    assert_eq!(plan.next(2, &stalled), None);
    assert_eq!(plan.claim(0, 250, 10), 10);
    assert_eq!(plan.take_beaten(), vec![1]);
    assert_eq!(plan.take_beaten(), Vec::<WorkerId>::new());
    assert_eq!(plan.claim(1, 250, 10), 0, "the loser writes nothing");
    plan.release(1, 250);
    assert_eq!(plan.remaining(), 140);
    assert_eq!(plan.claim(0, 260, 140), 140);
    plan.release(0, 400);
    assert!(plan.is_done());
}

/// Both of a racing pair silent (the racer's new connection was silent too): a third idle
/// worker replaces the racer instead of waiting for `--timeout`.
#[test]
fn a_silent_racer_is_replaced_when_its_holder_is_silent_too() {
    let mut plan = Plan::with_min_steal(&[r(0, 100)], 1, 1, 10);
    assert_eq!(plan.next(0, &never), Some(r(0, 100)));
    assert_eq!(plan.next(1, &|_| true), Some(r(0, 100)));
    assert_eq!(
        plan.next(2, &|w| w == 0),
        None,
        "the racer is not silent yet"
    );
    assert_eq!(plan.next(2, &|_| true), Some(r(0, 100)));
    let beaten = plan.take_beaten();
    assert_eq!(beaten.len(), 1, "one of the silent pair gives way");
    let (gone, kept) = (beaten[0], 1 - beaten[0]);
    assert_eq!(
        plan.claim(gone, 0, 10),
        0,
        "the replaced one writes nothing"
    );
    plan.release(gone, 0);
    assert_eq!(plan.remaining(), 100);
    assert_eq!(plan.claim(2, 0, 10), 10);
    assert_eq!(plan.take_beaten(), vec![kept]);
}

#[test]
fn a_revived_holder_beats_its_racer() {
    let mut plan = Plan::with_min_steal(&[r(0, 100)], 1, 1, 10);
    assert_eq!(plan.next(0, &never), Some(r(0, 100)));
    assert_eq!(plan.next(1, &|_| true), Some(r(0, 100)));
    assert_eq!(plan.claim(0, 0, 30), 30);
    assert_eq!(plan.take_beaten(), vec![1]);
    assert_eq!(plan.end_of(1), Some(0));
    plan.release(1, 0);
    assert_eq!(plan.remaining(), 70, "the loser requeues nothing");
}

#[test]
fn a_racer_that_fails_leaves_the_holder_alone_with_its_range() {
    let mut plan = Plan::with_min_steal(&[r(0, 100)], 1, 1, 10);
    assert_eq!(plan.next(0, &never), Some(r(0, 100)));
    assert_eq!(plan.next(1, &|_| true), Some(r(0, 100)));
    plan.release(1, 0);
    assert_eq!(plan.remaining(), 100);
    assert!(plan.take_beaten().is_empty());
    // The holder may be raced again later, and failing itself requeues everything.
    assert_eq!(plan.next(1, &|_| true), Some(r(0, 100)));
    plan.release(1, 0);
    plan.release(0, 0);
    assert_eq!(plan.next(2, &never), Some(r(0, 100)));
}

/// Property: random workers receiving random chunk sizes, failing at random, stealing and
/// racing stalled holders, always end with every byte claimed exactly once.
#[test]
fn random_schedules_claim_every_byte_exactly_once() {
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..300 {
        let len = rng.u64(1..50_000);
        let workers = rng.usize(1..9);
        let mut plan =
            Plan::with_min_steal(&[r(0, len)], workers, rng.u64(1..5000), rng.u64(1..2000));
        let mut owned: Vec<Option<u64>> = vec![None; workers]; // current position
        let mut hits = vec![0u8; len as usize];
        let mut idle_rounds = 0;
        while !plan.is_done() {
            let w = rng.usize(0..workers);
            match owned[w] {
                None => {
                    let mask = rng.u32(..);
                    let stalled = |x: WorkerId| (mask >> (x % 16 * 2)) & 3 == 0;
                    owned[w] = plan.next(w, &stalled).map(|x| x.start);
                    for b in plan.take_beaten() {
                        // The beaten worker's next claim gets nothing; it may also stop.
                        if rng.bool() {
                            if let Some(pos) = owned[b].take() {
                                plan.release(b, pos);
                            }
                        }
                    }
                }
                Some(pos) if rng.u8(0..20) == 0 => {
                    plan.release(w, pos);
                    owned[w] = None;
                }
                Some(pos) => {
                    let got = plan.claim(w, pos, rng.u64(1..3000));
                    hits[pos as usize..(pos + got) as usize]
                        .iter_mut()
                        .for_each(|h| *h += 1);
                    if got == 0 {
                        plan.release(w, pos);
                        owned[w] = None;
                    } else {
                        owned[w] = Some(pos + got);
                    }
                }
            }
            idle_rounds += 1;
            assert!(idle_rounds < 1_000_000, "plan never finishes");
        }
        assert!(
            hits.iter().all(|h| *h == 1),
            "len {len}: some byte claimed 0 or 2 times"
        );
    }
}

/// Speeds for [`Peers`]: worker `w` at `speeds[w]` bytes/s (0 unknown), nobody stalled.
struct Speeds(Vec<u64>);

impl Peers for Speeds {
    fn stalled(&self, _: WorkerId) -> bool {
        false
    }
    fn speed(&self, w: WorkerId) -> u64 {
        self.0.get(w).copied().unwrap_or(0)
    }
}

/// Issue 9 §4: a connection to a slow mirror loses its segment first, even when a fast one
/// has more bytes left, and keeps only what it finishes as soon as the thief finishes the rest.
#[test]
fn steal_takes_from_the_slowest_to_finish_in_proportion_to_speed() {
    let mut plan = Plan::with_min_steal(&[r(0, 3000)], 3, 1, 10);
    assert_eq!(plan.next(0, &never), Some(r(0, 1000)));
    assert_eq!(plan.next(1, &never), Some(r(1000, 2000)));
    assert_eq!(plan.next(2, &never), Some(r(2000, 3000)));
    // Worker 0 (fast, 32/s) is done; worker 1 (slow, 2/s) has 900 left; worker 2 (8/s) 980.
    assert_eq!(plan.claim(0, 0, 1000), 1000);
    assert_eq!(plan.claim(1, 1000, 100), 100);
    assert_eq!(plan.claim(2, 2000, 20), 20);
    plan.release(0, 1000);
    let speeds = Speeds(vec![32, 2, 8]);
    // 1100..2000 at 2/s is the longest wait; the holder keeps 900 * 2/34 = 52 bytes.
    assert_eq!(plan.next(0, &speeds), Some(r(1152, 2000)));
    assert_eq!(plan.end_of(1), Some(1152));
    assert_eq!(
        plan.end_of(2),
        Some(3000),
        "the faster holder keeps its segment"
    );
}

#[test]
fn steal_by_time_keeps_min_steal_for_both_sides_and_halves_without_speeds() {
    let mut plan = Plan::with_min_steal(&[r(0, 1000)], 1, 1, 100);
    assert_eq!(plan.next(0, &never), Some(r(0, 1000)));
    // Holder 1000x slower: it still keeps min_steal.
    assert_eq!(plan.next(1, &Speeds(vec![1, 1000])), Some(r(100, 1000)));
    plan.release(1, 100);
    let mut plan = Plan::with_min_steal(&[r(0, 1000)], 1, 1, 100);
    plan.next(0, &never);
    // Thief speed unknown: halves, as before mirrors.
    assert_eq!(plan.next(1, &Speeds(vec![5, 0])), Some(r(500, 1000)));
}
