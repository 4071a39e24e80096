//! How due steps become LINE requests, spending the least quota and rate budget (ARCHITECTURE
//! "Step delivery"; `specs/line/NOTES.md` §2). Pure: the dispatcher writes each request with its
//! retry key before sending it.
//!
//! - A request carries at most 5 message objects (LINE counts a request per recipient, not per
//!   bubble), so a student's due steps go in chunks of 5, in order.
//! - A student with a fresh reply token (the follow event's, used within LINE's minute) gets the
//!   first chunk by reply, which costs no quota. A reply token is single use, so the rest go by
//!   push.
//! - Students who need exactly the same chunk go together by multicast (at most 500 each) when
//!   there are more than [`MULTICAST_MIN`] - 1 of them. Quota counts recipients either way; the
//!   difference is the rate limit: multicast allows 200 requests/s against push's 2,000, so a
//!   multicast is worth it only for more than 10 recipients.

/// Message objects per request (`messages.maxItems` of reply, push and multicast).
pub const MAX_MESSAGES: usize = 5;
/// Recipients per multicast (`MulticastRequest.to.maxItems`).
pub const MAX_RECIPIENTS: usize = 500;
/// The fewest recipients that go by multicast rather than by pushes (see the module's note).
pub const MULTICAST_MIN: usize = 11;

/// A student with due steps, in delivery order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: String,
    pub steps: Vec<i64>,
    /// The follow event's reply token, when it is still fresh.
    pub reply_token: Option<String>,
}

/// One request to LINE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Reply { token: String, user_id: String, steps: Vec<i64> },
    Push { user_id: String, steps: Vec<i64> },
    Multicast { user_ids: Vec<String>, steps: Vec<i64> },
}

impl Request {
    pub fn steps(&self) -> &[i64] {
        match self {
            Request::Reply { steps, .. } | Request::Push { steps, .. } | Request::Multicast { steps, .. } => steps,
        }
    }

    /// How many messages LINE counts against the monthly quota (reply is free).
    pub fn quota(&self) -> usize {
        match self {
            Request::Reply { .. } => 0,
            Request::Push { .. } => 1,
            Request::Multicast { user_ids, .. } => user_ids.len(),
        }
    }
}

/// The requests that deliver every recipient's steps. For each recipient, the chunks come in
/// order: a request carrying a student's chunk `k` comes after every request carrying their
/// chunk `k - 1`, so sending the requests in the returned order keeps each student's order.
pub fn requests(recipients: &[Recipient]) -> Vec<Request> {
    let mut out = Vec::new();
    // (chunk index, the chunk) → who needs it, in the order first seen.
    let mut rounds: Vec<Vec<(Vec<i64>, Vec<String>)>> = Vec::new();
    for r in recipients {
        let mut chunks = r.steps.chunks(MAX_MESSAGES).map(<[i64]>::to_vec);
        let mut k = 0;
        if let Some(token) = &r.reply_token
            && let Some(first) = chunks.next()
        {
            out.push(Request::Reply { token: token.clone(), user_id: r.user_id.clone(), steps: first });
            k = 1;
        }
        for chunk in chunks {
            if rounds.len() <= k {
                rounds.resize_with(k + 1, Vec::new);
            }
            let round = &mut rounds[k];
            match round.iter_mut().find(|(c, _)| *c == chunk) {
                Some((_, users)) => users.push(r.user_id.clone()),
                None => round.push((chunk, vec![r.user_id.clone()])),
            }
            k += 1;
        }
    }
    for round in rounds {
        for (chunk, users) in round {
            if users.len() >= MULTICAST_MIN {
                for group in users.chunks(MAX_RECIPIENTS) {
                    out.push(Request::Multicast { user_ids: group.to_vec(), steps: chunk.clone() });
                }
            } else {
                out.extend(users.into_iter().map(|user_id| Request::Push { user_id, steps: chunk.clone() }));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(n: usize, steps: &[i64]) -> Vec<Recipient> {
        (0..n).map(|i| Recipient { user_id: format!("U{i}"), steps: steps.to_vec(), reply_token: None }).collect()
    }

    /// Every student receives exactly their steps, in order, whatever the requests were.
    fn received(requests: &[Request]) -> std::collections::HashMap<String, Vec<i64>> {
        let mut got: std::collections::HashMap<String, Vec<i64>> = Default::default();
        for r in requests {
            let users = match r {
                Request::Reply { user_id, .. } | Request::Push { user_id, .. } => vec![user_id.clone()],
                Request::Multicast { user_ids, .. } => user_ids.clone(),
            };
            for u in users {
                got.entry(u).or_default().extend_from_slice(r.steps());
            }
        }
        got
    }

    #[test]
    fn a_crowd_with_the_same_steps_goes_by_multicast_of_at_most_500() {
        let all = who(1_203, &[1, 2]);
        let r = requests(&all);
        assert_eq!(r.len(), 3);
        let sizes: Vec<usize> = r.iter().map(Request::quota).collect();
        assert_eq!(sizes, vec![500, 500, 203]);
        assert!(r.iter().all(|r| matches!(r, Request::Multicast { steps, .. } if steps == &[1, 2])));
        let got = received(&r);
        assert!(all.iter().all(|a| got[&a.user_id] == a.steps));
    }

    #[test]
    fn more_than_five_steps_go_in_chunks_of_five_in_order() {
        let one = who(1, &[1, 2, 3, 4, 5, 6, 7]);
        let r = requests(&one);
        assert_eq!(
            r,
            vec![
                Request::Push { user_id: "U0".into(), steps: vec![1, 2, 3, 4, 5] },
                Request::Push { user_id: "U0".into(), steps: vec![6, 7] },
            ]
        );
    }

    #[test]
    fn a_fresh_reply_token_carries_the_first_five_for_free() {
        let mut all = who(12, &[1, 2, 3, 4, 5, 6]);
        all[0].reply_token = Some("tok".into());
        let r = requests(&all);
        assert_eq!(r[0], Request::Reply { token: "tok".into(), user_id: "U0".into(), steps: vec![1, 2, 3, 4, 5] });
        // U0 then needs [6] like everyone's second chunk; the other 11 share their first chunk.
        let got = received(&r);
        assert!(all.iter().all(|a| got[&a.user_id] == a.steps), "{got:?}");
        assert_eq!(r.iter().map(Request::quota).sum::<usize>(), 11 + 12, "U0's first chunk is free");
        // Order per student: no request carrying someone's [6] before their [1..5].
        let first_six = r.iter().position(|q| q.steps() == [6]).unwrap();
        let last_first = r.iter().rposition(|q| q.steps() == [1, 2, 3, 4, 5]).unwrap();
        assert!(last_first < first_six);
    }

    #[test]
    fn few_students_or_different_steps_go_by_push() {
        let mut all = who(3, &[1]);
        all.push(Recipient { user_id: "X".into(), steps: vec![2], reply_token: None });
        let r = requests(&all);
        assert_eq!(r.len(), 4);
        assert!(r.iter().all(|r| matches!(r, Request::Push { .. })));
        assert_eq!(requests(&who(MULTICAST_MIN, &[1])).len(), 1);
        assert_eq!(requests(&who(MULTICAST_MIN - 1, &[1])).len(), MULTICAST_MIN - 1);
        assert!(requests(&[]).is_empty());
    }
}
