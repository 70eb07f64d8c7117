//! The search syntax: `<column>-<op>=<value>`, `limit`, `offset`.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};

use crate::state::SimOrder;

/// Most values of one `in`.
pub(crate) const MAX_IN_VALUES: usize = 100;
/// Largest `limit`.
pub(crate) const MAX_LIMIT: usize = 200;
/// `limit` when none is given.
pub(crate) const DEFAULT_LIMIT: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Column {
    OrderNo,
    OrderId,
    StatusId,
    UpdateDate,
    CancelFlag,
    ShippedFlag,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Like,
    In,
    Lt,
    Gt,
    Lte,
    Gte,
    Not,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Int(i64),
    Str(String),
    Date(DateTime<FixedOffset>),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Filter {
    pub(crate) column: Column,
    pub(crate) op: Op,
    pub(crate) values: Vec<Val>,
    pattern: Vec<char>,
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Query {
    pub(crate) filters: Vec<Filter>,
    pub(crate) limit: usize,
    pub(crate) offset: usize,
}

impl Query {
    /// The order numbers to start from when an `order_no` `eq`/`in` filter narrows the search.
    pub(crate) fn order_no_candidates(&self) -> Option<Vec<&str>> {
        self.filters.iter().find_map(|f| {
            (f.column == Column::OrderNo && matches!(f.op, Op::Eq | Op::In)).then(|| {
                f.values
                    .iter()
                    .filter_map(|v| match v {
                        Val::Str(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect()
            })
        })
    }

    pub(crate) fn matches(&self, order: &SimOrder) -> bool {
        self.filters.iter().all(|f| f.matches(order))
    }
}

fn column(name: &str) -> Option<Column> {
    Some(match name {
        "order_no" => Column::OrderNo,
        "order_id" => Column::OrderId,
        "status_id" => Column::StatusId,
        "update_date" => Column::UpdateDate,
        "cancel_flag" => Column::CancelFlag,
        "shipped_flag" => Column::ShippedFlag,
        _ => return None,
    })
}

fn op(name: &str) -> Option<Op> {
    Some(match name {
        "eq" => Op::Eq,
        "like" => Op::Like,
        "in" => Op::In,
        "lt" => Op::Lt,
        "gt" => Op::Gt,
        "lte" => Op::Lte,
        "gte" => Op::Gte,
        "not" => Op::Not,
        _ => return None,
    })
}

fn parse_value(column: Column, raw: &str, key: &str) -> Result<Val, String> {
    match column {
        Column::OrderNo => Ok(Val::Str(raw.to_owned())),
        Column::OrderId | Column::StatusId | Column::CancelFlag | Column::ShippedFlag => raw
            .trim()
            .parse::<i64>()
            .map(Val::Int)
            .map_err(|_| format!("{key}: {raw:?} is not an integer")),
        Column::UpdateDate => DateTime::parse_from_rfc3339(raw.trim())
            .or_else(|_| DateTime::parse_from_str(raw.trim(), "%Y-%m-%d %H:%M:%S%:z"))
            .map(Val::Date)
            .map_err(|_| {
                format!("{key}: {raw:?} is not a date-time like 2026-11-28T10:15:00+09:00")
            }),
    }
}

/// Parse a raw query string.
pub(crate) fn parse(raw_query: &str) -> Result<Query, String> {
    let mut query = Query {
        filters: Vec::new(),
        limit: DEFAULT_LIMIT,
        offset: 0,
    };
    for (key, value) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        match key.as_ref() {
            "limit" => {
                query.limit = value
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| format!("limit must be an integer from 1 to {MAX_LIMIT}"))?;
            }
            "offset" => {
                query.offset = value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| "offset must be an integer ≥ 0".to_owned())?;
            }
            k => {
                let (col, o) = k
                    .rsplit_once('-')
                    .ok_or_else(|| format!("unknown parameter {k:?}"))?;
                let column = column(col).ok_or_else(|| format!("unknown search column {col:?}"))?;
                let op = op(o).ok_or_else(|| format!("unknown search operator {o:?} in {k:?}"))?;
                let raws: Vec<&str> = if op == Op::In {
                    value.split(',').filter(|v| !v.is_empty()).collect()
                } else {
                    vec![value.as_ref()]
                };
                if raws.is_empty() || (op != Op::In && value.is_empty()) {
                    return Err(format!("{k} has no value"));
                }
                if raws.len() > MAX_IN_VALUES {
                    return Err(format!(
                        "{k} has {} values; at most {MAX_IN_VALUES} are allowed",
                        raws.len()
                    ));
                }
                let values = raws
                    .iter()
                    .map(|r| {
                        if op == Op::Like {
                            Ok(Val::Str((*r).to_owned()))
                        } else {
                            parse_value(column, r, k)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let pattern = if op == Op::Like {
                    value.chars().collect()
                } else {
                    Vec::new()
                };
                query.filters.push(Filter {
                    column,
                    op,
                    values,
                    pattern,
                });
            }
        }
    }
    Ok(query)
}

fn field(order: &SimOrder, column: Column) -> Val {
    match column {
        Column::OrderNo => Val::Str(order.order_no.clone()),
        Column::OrderId => Val::Int(order.order_id),
        Column::StatusId => Val::Int(i64::from(order.status_id)),
        Column::UpdateDate => Val::Date(order.update_date),
        Column::CancelFlag => Val::Int(i64::from(order.cancel_flag)),
        Column::ShippedFlag => Val::Int(i64::from(order.shipped_flag)),
    }
}

fn compare(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Date(x), Val::Date(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn text(v: &Val) -> String {
    match v {
        Val::Int(i) => i.to_string(),
        Val::Str(s) => s.clone(),
        Val::Date(d) => d.to_rfc3339(),
    }
}

/// SQL LIKE: `%` any run, `_` one character.
fn like(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '_' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '%' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == '%' {
        p += 1;
    }
    p == pattern.len()
}

impl Filter {
    fn matches(&self, order: &SimOrder) -> bool {
        let actual = field(order, self.column);
        let first = match self.values.first() {
            Some(v) => v,
            None => return false,
        };
        let cmp = || compare(&actual, first);
        match self.op {
            Op::Eq => cmp() == Some(Ordering::Equal),
            Op::Not => cmp() != Some(Ordering::Equal),
            Op::Lt => cmp() == Some(Ordering::Less),
            Op::Gt => cmp() == Some(Ordering::Greater),
            Op::Lte => matches!(cmp(), Some(Ordering::Less | Ordering::Equal)),
            Op::Gte => matches!(cmp(), Some(Ordering::Greater | Ordering::Equal)),
            Op::In => self
                .values
                .iter()
                .any(|v| compare(&actual, v) == Some(Ordering::Equal)),
            Op::Like => {
                let t: Vec<char> = text(&actual).chars().collect();
                like(&self.pattern, &t)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_sql_style() {
        let m = |p: &str, t: &str| {
            like(
                &p.chars().collect::<Vec<_>>(),
                &t.chars().collect::<Vec<_>>(),
            )
        };
        assert!(m("S1-%", "S1-000123"));
        assert!(m("%123", "S1-000123"));
        assert!(m("S_-%3", "S1-000123"));
        assert!(!m("S2-%", "S1-000123"));
        assert!(m("%", ""));
        assert!(!m("_", ""));
    }

    #[test]
    fn parse_rules() {
        let q = parse("order_no-in=a,b,c&status_id-gte=50&limit=200&offset=5").expect("valid");
        assert_eq!(q.limit, 200);
        assert_eq!(q.offset, 5);
        assert_eq!(q.order_no_candidates(), Some(vec!["a", "b", "c"]));
        assert!(parse("limit=201").is_err());
        assert!(parse("limit=0").is_err());
        assert!(parse("foo-eq=1").is_err());
        assert!(parse("order_no-between=1").is_err());
        assert!(parse("status_id-eq=abc").is_err());
        let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        assert!(parse(&format!("order_no-in={}", many.join(","))).is_err());
        assert!(parse("update_date-gte=2026-11-28T10%3A15%3A00%2B09%3A00").is_ok());
        assert_eq!(parse("").expect("empty").limit, DEFAULT_LIMIT);
    }
}
