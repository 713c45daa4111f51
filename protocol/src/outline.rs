//! A structural pass over one frame body that allocates nothing, run before the typed decode.
//!
//! Why it exists: serde can only tell a caller which request a bad body belonged to by buffering
//! the body into its generic `Content` tree (an untagged enum does exactly that), and that tree
//! costs about 32 bytes per CBOR item: a 16 MiB body of one-byte items became 512 MiB. Even the
//! typed decode of a *valid* shape can cost 24x (a hello with millions of empty capability
//! strings). This pass walks the CBOR heads only, with a fixed-size stack, and
//!
//! * refuses a body with more than [`MAX_FRAME_ITEMS`] items or nested deeper than
//!   [`MAX_FRAME_DEPTH`], or whose declared lengths run past its end, before any allocation;
//! * recovers, on the way, the frame's kind tag, its request id and, for a request, the single key
//!   naming the request type, so a body that then fails the typed decode is still answered with
//!   `UnknownRequest` or `Malformed` under its own id.
//!
//! What the typed decode allocates after this pass is then bounded by the body's own byte and text
//! strings (at most its length) plus a few dozen bytes per item, at most [`MAX_FRAME_ITEMS`] of them.

/// Most CBOR items (every head: integers, strings, containers, tags) one frame body may hold.
/// The largest legitimate frame is a storage listing page: 1000 objects of 7 items each. 65 536 is
/// nine times that, and caps what the typed decode can spend on item overhead at a few MiB.
pub const MAX_FRAME_ITEMS: usize = 65_536;

/// Deepest nesting of arrays, maps and tags in a frame body. Real frames nest six deep (frame,
/// response, storage, listing, objects, object); ciborium's own limit is 256.
pub const MAX_FRAME_DEPTH: usize = 32;

/// What the pass learnt about a body: the header fields it could read, and whether the whole body
/// is well-formed CBOR within the bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outline<'a> {
    /// Element 0 of the frame array, when it is a text string.
    pub kind: Option<&'a str>,
    /// Element 1 of the frame array, when the kind was text and this is an unsigned integer.
    pub id: Option<u64>,
    /// For element 3 being a one-entry map with a text key: that key (a request's type name).
    pub body_key: Option<&'a str>,
    /// Element 3 when it is a text string: a request type without a body (`"ping"`).
    pub body_tag: Option<&'a str>,
    /// `Err` with a bland reason when the body is not well-formed or is over a bound.
    pub checked: Result<(), &'static str>,
}

/// One open container on the walk's stack.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// Items still expected; `None` for an indefinite-length container (ends at a break).
    left: Option<u64>,
    /// Items already seen in it (only used for the frame array itself).
    seen: u64,
}

/// A CBOR head: major type and argument (`None` for the indefinite-length marker).
struct Head {
    major: u8,
    arg: Option<u64>,
}

/// The walk's cursor over the body.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn head(&mut self) -> Result<Head, &'static str> {
        let first = *self
            .bytes
            .get(self.pos)
            .ok_or("frame body ends inside a value")?;
        self.pos += 1;
        let (major, info) = (first >> 5, first & 0x1f);
        let width = match info {
            0..=23 => {
                return Ok(Head {
                    major,
                    arg: Some(info.into()),
                })
            }
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 if matches!(major, 2..=5 | 7) => return Ok(Head { major, arg: None }),
            _ => return Err("frame body is not valid CBOR"),
        };
        let raw = self.take(width)?;
        let arg = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        Ok(Head {
            major,
            arg: Some(arg),
        })
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], &'static str> {
        if n > self.left() {
            return Err("frame body ends inside a value");
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }
}

impl<'a> Outline<'a> {
    /// Walks `body` once. Never allocates, never recurses.
    pub(crate) fn of(body: &'a [u8]) -> Self {
        let mut outline = Outline {
            kind: None,
            id: None,
            body_key: None,
            body_tag: None,
            checked: Ok(()),
        };
        outline.checked = outline.walk(body);
        outline
    }

    fn walk(&mut self, body: &'a [u8]) -> Result<(), &'static str> {
        let mut cur = Cursor {
            bytes: body,
            pos: 0,
        };
        let mut stack = [Open {
            left: None,
            seen: 0,
        }; MAX_FRAME_DEPTH];
        let mut depth = 0usize;
        let mut items = 0usize;
        // Header fields are read only from a body that is an array (the frame shape).
        let mut frame_array = false;
        // Set while the next item is the first key of the frame's one-entry body map.
        let mut next_is_body_key = false;
        loop {
            let head = cur.head()?;
            // A break closes the innermost indefinite-length container; it is not an item.
            if head.major == 7 && head.arg.is_none() {
                match depth.checked_sub(1).map(|d| stack[d].left) {
                    Some(None) => depth -= 1,
                    _ => return Err("frame body is not valid CBOR"),
                }
                self.close_finished(&mut stack, &mut depth);
                if depth == 0 {
                    break;
                }
                continue;
            }
            items += 1;
            if items > MAX_FRAME_ITEMS {
                return Err("frame body has too many items");
            }
            // Where this item sits: its index in the frame array, when it is a direct element.
            let index = (depth == 1 && frame_array).then(|| stack[0].seen);
            if depth == 0 {
                frame_array = head.major == 4;
            }
            if depth > 0 {
                let open = &mut stack[depth - 1];
                open.seen += 1;
                if let Some(left) = open.left.as_mut() {
                    *left -= 1;
                }
            }
            let body_key = std::mem::take(&mut next_is_body_key);
            match head.major {
                // The request id: an unsigned integer right after a text kind.
                0 if index == Some(1) && self.kind.is_some() => self.id = head.arg,
                0 | 1 => {}
                2 | 3 => {
                    let bytes = match head.arg {
                        Some(len) => cur.take(len)?,
                        None => {
                            skip_chunks(&mut cur, head.major, &mut items)?;
                            &[]
                        }
                    };
                    if head.major == 3 && head.arg.is_some() {
                        let text = std::str::from_utf8(bytes).ok();
                        if index == Some(0) {
                            self.kind = text;
                        } else if body_key {
                            self.body_key = text;
                        } else if index == Some(3) && head.major == 3 {
                            self.body_tag = text;
                        }
                    }
                }
                4..=6 => {
                    // Every item takes at least one byte, so a length past the end is a lie.
                    let want = match (head.major, head.arg) {
                        (5, Some(n)) => Some(n.checked_mul(2).ok_or("frame body is too long")?),
                        (6, _) => Some(1),
                        (_, n) => n,
                    };
                    if want.is_some_and(|n| n > cur.left()) {
                        return Err("frame body ends inside a value");
                    }
                    if depth == MAX_FRAME_DEPTH {
                        return Err("frame body is nested too deeply");
                    }
                    next_is_body_key = index == Some(3) && head.major == 5 && head.arg == Some(1);
                    stack[depth] = Open {
                        left: want,
                        seen: 0,
                    };
                    depth += 1;
                }
                _ => {
                    // Major 7: simple values and floats; the argument bytes were the value.
                }
            }
            self.close_finished(&mut stack, &mut depth);
            if depth == 0 {
                break;
            }
        }
        if cur.left() > 0 {
            return Err("trailing bytes after frame");
        }
        Ok(())
    }

    /// Pops every definite-length container whose last item has been seen.
    fn close_finished(&self, stack: &mut [Open], depth: &mut usize) {
        while *depth > 0 && stack[*depth - 1].left == Some(0) {
            *depth -= 1;
        }
    }
}

/// Skips the definite-length chunks of an indefinite-length byte or text string up to its break.
fn skip_chunks(cur: &mut Cursor<'_>, major: u8, items: &mut usize) -> Result<(), &'static str> {
    loop {
        let chunk = cur.head()?;
        match (chunk.major, chunk.arg) {
            (7, None) => return Ok(()),
            (m, Some(len)) if m == major => {
                cur.take(len)?;
                *items += 1;
                if *items > MAX_FRAME_ITEMS {
                    return Err("frame body has too many items");
                }
            }
            _ => return Err("frame body is not valid CBOR"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor(v: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn header_fields_are_read_from_a_request() {
        use ciborium::Value as V;
        let body = cbor(&V::Array(vec![
            V::Text("req".into()),
            V::Integer(7.into()),
            V::Integer(100.into()),
            V::Map(vec![(V::Text("teleport".into()), V::Null)]),
        ]));
        let o = Outline::of(&body);
        assert_eq!(o.kind, Some("req"));
        assert_eq!(o.id, Some(7));
        assert_eq!(o.body_key, Some("teleport"));
        assert_eq!(o.body_tag, None);
        assert_eq!(o.checked, Ok(()));
    }

    #[test]
    fn a_request_type_without_a_body_is_read_as_a_tag() {
        use ciborium::Value as V;
        let body = cbor(&V::Array(vec![
            V::Text("req".into()),
            V::Integer(7.into()),
            V::Integer(100.into()),
            V::Text("aws_credentials".into()),
        ]));
        let o = Outline::of(&body);
        assert_eq!((o.body_key, o.body_tag), (None, Some("aws_credentials")));
    }

    #[test]
    fn too_many_items_are_refused_but_the_id_is_kept() {
        let mut body = vec![0x84, 0x63, b'r', b'e', b'q', 0x05, 0x01, 0x9a];
        body.extend_from_slice(&(MAX_FRAME_ITEMS as u32).to_be_bytes());
        body.resize(body.len() + MAX_FRAME_ITEMS, 0);
        let o = Outline::of(&body);
        assert_eq!(o.id, Some(5));
        assert_eq!(o.checked, Err("frame body has too many items"));
        // One fewer (the frame array and its first three elements are items too) fits.
        let mut ok = vec![0x84, 0x63, b'r', b'e', b'q', 0x05, 0x01, 0x9a];
        ok.extend_from_slice(&((MAX_FRAME_ITEMS - 5) as u32).to_be_bytes());
        ok.resize(ok.len() + MAX_FRAME_ITEMS - 5, 0);
        assert_eq!(Outline::of(&ok).checked, Ok(()));
    }

    #[test]
    fn lengths_past_the_end_depth_and_bad_breaks_are_refused() {
        // An array announcing 2^32-1 items in a 9-byte body.
        let lie = [0x84, 0x60, 0x01, 0x01, 0x9a, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            Outline::of(&lie).checked,
            Err("frame body ends inside a value")
        );
        let mut deep = vec![0x81; MAX_FRAME_DEPTH + 1];
        deep.push(0x00);
        assert_eq!(
            Outline::of(&deep).checked,
            Err("frame body is nested too deeply")
        );
        assert!(Outline::of(&[0xff]).checked.is_err());
        assert!(Outline::of(&[0x1c]).checked.is_err());
        assert_eq!(
            Outline::of(&[0x80, 0x00]).checked,
            Err("trailing bytes after frame")
        );
    }

    #[test]
    fn indefinite_lengths_and_tags_are_walked() {
        // [_ "a", (_ h'01', h'02'), tag(1) 3, {_ 1: 2}]
        let body = [
            0x9f, 0x61, b'a', 0x5f, 0x41, 0x01, 0x41, 0x02, 0xff, 0xc1, 0x03, 0xbf, 0x01, 0x02,
            0xff, 0xff,
        ];
        let o = Outline::of(&body);
        assert_eq!(o.checked, Ok(()));
        assert_eq!(o.kind, Some("a"));
        assert_eq!(o.id, None);
    }
}
