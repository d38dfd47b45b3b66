//! Streaming decode of a `ModelProto`: initializers are decoded and handed to
//! a callback one at a time, so peak memory stays near the size of the
//! converted weights instead of file + protobuf + IR copies at once.
use super::pb;
use prost::Message;
use std::io::Read;

fn read_varint(r: &mut impl Read) -> std::io::Result<Option<u64>> {
    let mut v = 0u64;
    for i in 0..10 {
        let mut b = [0u8; 1];
        if r.read(&mut b)? == 0 {
            if i == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated varint"));
        }
        v |= ((b[0] & 0x7f) as u64) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "varint longer than 10 bytes"))
}

fn need(r: &mut impl Read) -> std::io::Result<u64> {
    read_varint(r)?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated field"))
}

fn read_exact_vec(r: &mut impl Read, n: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let got = r.take(n).read_to_end(&mut buf)?;
    if (got as u64) < n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("field of {n} bytes truncated after {got}"),
        ));
    }
    Ok(buf)
}

/// Copies one field (its key already read) verbatim into `out`.
fn copy_field(r: &mut impl Read, key: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    prost::encoding::encode_varint(key, out);
    match key & 7 {
        0 => prost::encoding::encode_varint(need(r)?, out),
        1 => out.extend(read_exact_vec(r, 8)?),
        2 => {
            let n = need(r)?;
            prost::encoding::encode_varint(n, out);
            out.extend(read_exact_vec(r, n)?);
        }
        5 => out.extend(read_exact_vec(r, 4)?),
        w => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unsupported wire type {w}"),
            ))
        }
    }
    Ok(())
}

/// Decodes a model; each graph initializer goes to `on_init` as soon as it is read.
pub(crate) fn decode<R: Read, E: From<String>>(
    mut r: R,
    mut on_init: impl FnMut(pb::TensorProto) -> Result<(), E>,
) -> Result<pb::ModelProto, E> {
    let io = |e: std::io::Error| E::from(e.to_string());
    let mut top = Vec::new();
    let mut graph = Vec::new();
    let mut has_graph = false;
    while let Some(key) = read_varint(&mut r).map_err(io)? {
        if key >> 3 == 7 && key & 7 == 2 {
            has_graph = true;
            let len = need(&mut r).map_err(io)?;
            let mut g = (&mut r).take(len);
            while let Some(k) = read_varint(&mut g).map_err(io)? {
                if k >> 3 == 5 && k & 7 == 2 {
                    let n = need(&mut g).map_err(io)?;
                    let buf = read_exact_vec(&mut g, n).map_err(io)?;
                    let t = pb::TensorProto::decode(&buf[..])
                        .map_err(|e| E::from(format!("initializer: {e}")))?;
                    drop(buf);
                    on_init(t)?;
                } else {
                    copy_field(&mut g, k, &mut graph).map_err(io)?;
                }
            }
            if g.limit() > 0 {
                return Err(E::from(format!("graph truncated ({} bytes missing)", g.limit())));
            }
        } else {
            copy_field(&mut r, key, &mut top).map_err(io)?;
        }
    }
    let mut model = pb::ModelProto::decode(&top[..]).map_err(|e| E::from(e.to_string()))?;
    if has_graph {
        model.graph =
            Some(pb::GraphProto::decode(&graph[..]).map_err(|e| E::from(format!("graph: {e}")))?);
    }
    Ok(model)
}
