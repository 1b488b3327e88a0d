//! Segment order, groups and cardinality: a message's segment ids matched against a
//! message structure.
//!
//! Map:
//! - [`Nfa::compile`] turns the structure (segments and nested groups with min/max) into a
//!   Thompson automaton over segment ids. Bounded repeats are unrolled up to
//!   [`MAX_UNROLL`] copies; larger maxima are treated as unbounded.
//! - [`align`] finds the cheapest way to read the message with that automaton when two
//!   edits are allowed, each costing 1: *skip* a message segment (it is unexpected there)
//!   and *assume* a segment edge without a message segment (a required segment is missing).
//!   This is a shortest path over (message position, state) with 0/1 weights, solved column
//!   by column (Dijkstra with cost buckets within a column); back pointers give the edits. A valid message costs 0.
//!
//! Invariants: every message segment is either consumed by an edge or skipped, so each
//! unexpected segment is reported exactly once; the work is bounded by
//! [`MAX_ALIGNMENT_CELLS`] (segments × states), checked before any allocation.

use super::definitions::{ANY_SEGMENT, ElementDef};

/// Bounded repeats (`max` > 1) become this many copies at most; above, the repeat is
/// treated as unbounded. The standard's finite maxima above 1 are rare and small (2 or 3).
pub const MAX_UNROLL: u32 = 8;

/// Segments × automaton states above which the structure check is skipped (with a 207
/// warning). Each cell holds a 4-byte back pointer, so this caps the check at 64 MiB:
/// about 100 000 segments against a large structure.
pub const MAX_ALIGNMENT_CELLS: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
enum Label {
    Eps,
    Seg([u8; 3]),
    /// Any one segment.
    Any,
}

#[derive(Debug, Default)]
struct State {
    edges: Vec<(Label, u32)>,
}

/// An automaton over segment ids.
#[derive(Debug)]
pub struct Nfa {
    states: Vec<State>,
    start: u32,
    accept: u32,
}

fn seg_key(id: &str) -> [u8; 3] {
    let b = id.as_bytes();
    let mut k = [0u8; 3];
    for (i, slot) in k.iter_mut().enumerate() {
        *slot = b.get(i).copied().unwrap_or(0);
    }
    k
}

impl Nfa {
    pub fn compile(elements: &[ElementDef]) -> Nfa {
        let mut nfa = Nfa {
            states: Vec::new(),
            start: 0,
            accept: 0,
        };
        let (s, e) = nfa.sequence(elements);
        nfa.start = s;
        nfa.accept = e;
        nfa
    }

    #[cfg(test)]
    fn state_count(&self) -> usize {
        self.states.len()
    }

    fn new_state(&mut self) -> u32 {
        self.states.push(State::default());
        (self.states.len() - 1) as u32
    }

    fn edge(&mut self, from: u32, label: Label, to: u32) {
        self.states[from as usize].edges.push((label, to));
    }

    fn sequence(&mut self, elements: &[ElementDef]) -> (u32, u32) {
        let start = self.new_state();
        let mut cur = start;
        for el in elements {
            let (s, e) = self.element(el);
            self.edge(cur, Label::Eps, s);
            cur = e;
        }
        (start, cur)
    }

    /// One copy of the element's body, without its cardinality.
    fn once(&mut self, el: &ElementDef) -> (u32, u32) {
        match el {
            ElementDef::Segment { id, .. } => {
                let s = self.new_state();
                let e = self.new_state();
                let label = if &**id == ANY_SEGMENT {
                    Label::Any
                } else {
                    Label::Seg(seg_key(id))
                };
                self.edge(s, label, e);
                (s, e)
            }
            ElementDef::Group { children, .. } => self.sequence(children),
        }
    }

    fn element(&mut self, el: &ElementDef) -> (u32, u32) {
        let (min, max) = (el.min(), el.max());
        let unbounded = max == 0 || max > MAX_UNROLL;
        let start = self.new_state();
        let mut cur = start;
        for _ in 0..min.min(MAX_UNROLL) {
            let (s, e) = self.once(el);
            self.edge(cur, Label::Eps, s);
            cur = e;
        }
        if unbounded {
            // cur -> loop -> (body -> loop)* -> end
            let hub = self.new_state();
            self.edge(cur, Label::Eps, hub);
            let (s, e) = self.once(el);
            self.edge(hub, Label::Eps, s);
            self.edge(e, Label::Eps, hub);
            cur = hub;
        } else {
            for _ in min..max {
                let (s, e) = self.once(el);
                let after = self.new_state();
                self.edge(cur, Label::Eps, s);
                self.edge(e, Label::Eps, after);
                self.edge(cur, Label::Eps, after);
                cur = after;
            }
        }
        let end = self.new_state();
        self.edge(cur, Label::Eps, end);
        (start, end)
    }
}

/// An edit the alignment needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// The message segment at this position (0-based, in the input slice) is not allowed
    /// where it is.
    Unexpected(usize),
    /// A segment with this id is missing before input position `before` (the input length
    /// when missing at the end).
    Missing { id: String, before: usize },
}

/// The alignment could not run within [`MAX_ALIGNMENT_CELLS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub cells: usize,
}

const OP_ROOT: u32 = 0;
const OP_EPS: u32 = 1;
const OP_MISSING: u32 = 2;
const OP_CONSUME: u32 = 3;
// Skip shares OP_CONSUME's column step but keeps the state; told apart by prev == state.
const OP_SKIP: u32 = 4;
const OP_SHIFT: u32 = 29;
const STATE_MASK: u32 = (1 << OP_SHIFT) - 1;

fn push_bucket(buckets: &mut Vec<Vec<u32>>, level: usize, state: u32) {
    if buckets.len() <= level {
        buckets.resize_with(level + 1, Vec::new);
    }
    buckets[level].push(state);
}

/// Aligns segment ids against the automaton; returns the edits in message order.
pub fn align(nfa: &Nfa, ids: &[[u8; 3]]) -> Result<Vec<Edit>, TooLarge> {
    let n_states = nfa.states.len();
    let cells = (ids.len() + 1).saturating_mul(n_states);
    if cells > MAX_ALIGNMENT_CELLS || n_states as u64 > STATE_MASK as u64 {
        return Err(TooLarge { cells });
    }
    let mut back = vec![u32::MAX; cells];
    // Beam search made exact: a pass that keeps only states within `beam` of the column's
    // best cost still contains the optimal path whenever the optimum costs at most `beam`
    // (every prefix of that path costs at most the optimum). So a pass whose result costs
    // at most its beam is optimal; otherwise widen. Valid messages finish in the first,
    // cheap pass.
    for beam in BEAMS {
        if let Some((total, edits)) = align_pass(nfa, ids, &mut back, beam)
            && total <= beam
        {
            return Ok(edits);
        }
        back.fill(u32::MAX);
    }
    // The last beam is unbounded, so the loop always returns; keep the compiler content
    // without a panic path.
    Ok(Vec::new())
}

/// Beams tried in turn; the last keeps every state.
const BEAMS: [u32; 3] = [0, 4, u32::MAX];

const INF: u32 = u32::MAX;

/// One alignment pass keeping states within `beam` of each column's best; `None` when the
/// accepting state was not reached.
fn align_pass(nfa: &Nfa, ids: &[[u8; 3]], back: &mut [u32], beam: u32) -> Option<(u32, Vec<Edit>)> {
    let n_states = nfa.states.len();
    let mut cost = vec![INF; n_states];
    let mut next = vec![INF; n_states];
    let mut buckets: Vec<Vec<u32>> = Vec::new();
    let mut done = vec![false; n_states];
    let pack = |op: u32, prev: u32| (op << OP_SHIFT) | prev;

    cost[nfa.start as usize] = 0;
    back[nfa.start as usize] = pack(OP_ROOT, 0);
    for col in 0..=ids.len() {
        let row = col * n_states;
        // Closure within the column: epsilon edges cost 0, assuming a segment costs 1.
        // Dijkstra with a bucket per cost (costs are small integers, edges weigh 0 or 1),
        // so each state is settled once, in a fixed order.
        let min = cost.iter().copied().filter(|&c| c != INF).min()?;
        let limit = min.saturating_add(beam);
        for bucket in buckets.iter_mut() {
            bucket.clear();
        }
        done.fill(false);
        for (s, c) in cost.iter_mut().enumerate().rev() {
            if *c == INF {
                continue;
            }
            if *c > limit {
                *c = INF;
            } else {
                push_bucket(&mut buckets, (*c - min) as usize, s as u32);
            }
        }
        let mut level = 0;
        while level < buckets.len() {
            let Some(s) = buckets[level].pop() else {
                level += 1;
                continue;
            };
            let su = s as usize;
            let c = min + level as u32;
            if done[su] || cost[su] != c {
                continue;
            }
            done[su] = true;
            for &(label, t) in &nfa.states[su].edges {
                let tu = t as usize;
                let (nc, op) = match label {
                    Label::Eps => (c, OP_EPS),
                    Label::Seg(_) | Label::Any => (c + 1, OP_MISSING),
                };
                if nc < cost[tu] && nc <= limit {
                    cost[tu] = nc;
                    back[row + tu] = pack(op, s);
                    push_bucket(&mut buckets, (nc - min) as usize, t);
                }
            }
        }
        if col == ids.len() {
            break;
        }
        // Step to the next column: consume the segment on a matching edge, or skip it.
        let id = ids[col];
        next.fill(INF);
        let next_row = row + n_states;
        for (s, (&c, state)) in cost.iter().zip(&nfa.states).enumerate() {
            if c == INF {
                continue;
            }
            for &(label, t) in &state.edges {
                let matches = match label {
                    Label::Seg(k) => k == id,
                    Label::Any => true,
                    Label::Eps => false,
                };
                if matches && c < next[t as usize] {
                    next[t as usize] = c;
                    back[next_row + t as usize] = pack(OP_CONSUME, s as u32);
                }
            }
        }
        for s in 0..n_states {
            let c = cost[s];
            if c != INF && c + 1 < next[s] {
                next[s] = c + 1;
                back[next_row + s] = pack(OP_SKIP, s as u32);
            }
        }
        std::mem::swap(&mut cost, &mut next);
    }

    let total = cost[nfa.accept as usize];
    if total == INF {
        return None;
    }
    // Walk the back pointers from the accepting state.
    let mut edits = Vec::new();
    let mut col = ids.len();
    let mut state = nfa.accept;
    loop {
        let b = back[col * n_states + state as usize];
        let (op, prev) = (b >> OP_SHIFT, b & STATE_MASK);
        match op {
            OP_ROOT => break,
            OP_EPS => state = prev,
            OP_MISSING => {
                let id = nfa.states[prev as usize]
                    .edges
                    .iter()
                    .find_map(|&(l, t)| match l {
                        Label::Seg(k) if t == state => {
                            Some(String::from_utf8_lossy(&k).into_owned())
                        }
                        Label::Any if t == state => Some(ANY_SEGMENT.to_owned()),
                        _ => None,
                    })
                    .unwrap_or_default();
                edits.push(Edit::Missing { id, before: col });
                state = prev;
            }
            OP_CONSUME => {
                col -= 1;
                state = prev;
            }
            OP_SKIP => {
                col -= 1;
                edits.push(Edit::Unexpected(col));
            }
            _ => break,
        }
    }
    edits.reverse();
    Some((total, edits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: &str, min: u32, max: u32) -> ElementDef {
        ElementDef::Segment {
            id: id.into(),
            min,
            max,
        }
    }

    fn g(name: &str, min: u32, max: u32, children: Vec<ElementDef>) -> ElementDef {
        ElementDef::Group {
            name: name.into(),
            min,
            max,
            children,
        }
    }

    fn run(structure: &[ElementDef], msg: &str) -> Vec<Edit> {
        let ids: Vec<[u8; 3]> = msg.split_whitespace().map(seg_key).collect();
        align(&Nfa::compile(structure), &ids).unwrap()
    }

    fn oru() -> Vec<ElementDef> {
        vec![
            s("MSH", 1, 1),
            g(
                "RESULT",
                1,
                0,
                vec![
                    g("PATIENT", 0, 1, vec![s("PID", 1, 1), s("NTE", 0, 0)]),
                    g(
                        "ORDER",
                        1,
                        0,
                        vec![
                            s("ORC", 0, 1),
                            s("OBR", 1, 1),
                            g("OBS", 0, 0, vec![s("OBX", 1, 1), s("NTE", 0, 0)]),
                        ],
                    ),
                ],
            ),
            s("DSC", 0, 1),
        ]
    }

    #[test]
    fn valid_sequences_need_no_edit() {
        for msg in [
            "MSH PID OBR",
            "MSH OBR OBX OBX NTE OBX",
            "MSH PID NTE ORC OBR OBX OBR OBX PID OBR DSC",
            "MSH PID OBR OBX NTE NTE ORC OBR",
        ] {
            assert_eq!(run(&oru(), msg), vec![], "{msg}");
        }
    }

    #[test]
    fn edits_are_found() {
        assert_eq!(
            run(&oru(), "MSH PID"),
            vec![Edit::Missing {
                id: "OBR".into(),
                before: 2
            }]
        );
        assert_eq!(run(&oru(), "MSH OBR PV1 OBX"), vec![Edit::Unexpected(2)]);
        assert_eq!(
            run(&oru(), "MSH OBR OBX DSC OBX"),
            vec![Edit::Unexpected(4)]
        );
        assert_eq!(run(&oru(), "MSH MSH OBR"), vec![Edit::Unexpected(1)]);
        assert_eq!(
            run(&oru(), ""),
            vec![
                Edit::Missing {
                    id: "MSH".into(),
                    before: 0
                },
                Edit::Missing {
                    id: "OBR".into(),
                    before: 0
                }
            ]
        );
    }

    #[test]
    fn bounded_repeats_are_counted() {
        let st = vec![s("MSH", 1, 1), s("NK1", 0, 2), s("PV1", 1, 1)];
        assert_eq!(run(&st, "MSH NK1 NK1 PV1"), vec![]);
        assert_eq!(run(&st, "MSH NK1 NK1 NK1 PV1"), vec![Edit::Unexpected(3)]);
        let st = vec![s("MSH", 1, 1), s("OBX", 2, 3)];
        assert_eq!(run(&st, "MSH OBX OBX OBX"), vec![]);
        let edits = run(&st, "MSH OBX");
        assert!(
            matches!(&edits[..], [Edit::Missing { id, .. }] if id == "OBX"),
            "{edits:?}"
        );
        assert_eq!(run(&st, "MSH OBX OBX OBX OBX"), vec![Edit::Unexpected(4)]);
    }

    #[test]
    fn any_segment_matches_one_segment() {
        let st = vec![s("MSH", 1, 1), s("QPD", 1, 1), s("*", 0, 0), s("RCP", 1, 1)];
        assert_eq!(run(&st, "MSH QPD PID NK1 RCP"), vec![]);
        assert_eq!(
            run(&st, "MSH QPD"),
            vec![Edit::Missing {
                id: "RCP".into(),
                before: 2
            }]
        );
    }

    #[test]
    fn too_large_is_refused_before_allocating() {
        let nfa = Nfa::compile(&oru());
        let ids = vec![*b"OBX"; MAX_ALIGNMENT_CELLS / nfa.state_count() + 1];
        assert!(align(&nfa, &ids).is_err());
    }
}
