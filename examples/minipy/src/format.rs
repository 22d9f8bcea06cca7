//! Number formatting as Python does it: `repr(float)`, the format-spec mini-language
//! (`f"{x:>8.2f}"`), `str.format` and `%`-formatting.

use std::rc::Rc;

use crate::interp::{Interp, PyResult};
use crate::value::Value;

/// `repr(f)`: the shortest repr that round-trips, in Python's layout.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let s = if exp >= 0 {
            if n > exp + 1 {
                format!(
                    "{}.{}",
                    &digits[..(exp + 1) as usize],
                    &digits[(exp + 1) as usize..]
                )
            } else {
                format!("{}{}.0", digits, "0".repeat((exp + 1 - n) as usize))
            }
        } else {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        format!(
            "{sign}{m}e{}{:02}",
            if exp < 0 { "-" } else { "+" },
            exp.abs()
        )
    }
}

struct Spec {
    fill: char,
    align: Option<char>,
    sign: char,
    alt: bool,
    zero: bool,
    width: usize,
    comma: Option<char>,
    precision: Option<usize>,
    ty: Option<char>,
}

fn parse_spec(s: &str) -> Option<Spec> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut sp = Spec {
        fill: ' ',
        align: None,
        sign: '-',
        alt: false,
        zero: false,
        width: 0,
        comma: None,
        precision: None,
        ty: None,
    };
    if c.len() >= 2 && "<>=^".contains(c[1]) {
        sp.fill = c[0];
        sp.align = Some(c[1]);
        i = 2;
    } else if !c.is_empty() && "<>=^".contains(c[0]) {
        sp.align = Some(c[0]);
        i = 1;
    }
    if i < c.len() && "+- ".contains(c[i]) {
        sp.sign = c[i];
        i += 1;
    }
    if i < c.len() && c[i] == '#' {
        sp.alt = true;
        i += 1;
    }
    if i < c.len() && c[i] == '0' {
        sp.zero = true;
        i += 1;
    }
    let st = i;
    while i < c.len() && c[i].is_ascii_digit() {
        i += 1;
    }
    if i > st {
        sp.width = c[st..i].iter().collect::<String>().parse().ok()?;
    }
    if i < c.len() && (c[i] == ',' || c[i] == '_') {
        sp.comma = Some(c[i]);
        i += 1;
    }
    if i < c.len() && c[i] == '.' {
        i += 1;
        let st = i;
        while i < c.len() && c[i].is_ascii_digit() {
            i += 1;
        }
        sp.precision = Some(c[st..i].iter().collect::<String>().parse().ok()?);
    }
    if i < c.len() {
        sp.ty = Some(c[i]);
        i += 1;
    }
    if i != c.len() {
        return None;
    }
    Some(sp)
}

fn group(digits: &str, sep: char) -> String {
    let (int, frac) = match digits.find('.') {
        Some(p) => (&digits[..p], &digits[p..]),
        None => (digits, ""),
    };
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(sep);
        }
        out.push(ch);
    }
    out + frac
}

fn pad(sp: &Spec, sign: &str, body: &str, numeric: bool) -> String {
    let len = sign.chars().count() + body.chars().count();
    if len >= sp.width {
        return format!("{sign}{body}");
    }
    let n = sp.width - len;
    let (fill, align) = if sp.zero && sp.align.is_none() && numeric {
        ('0', '=')
    } else {
        (sp.fill, sp.align.unwrap_or(if numeric { '>' } else { '<' }))
    };
    let f = |k: usize| fill.to_string().repeat(k);
    match align {
        '<' => format!("{sign}{body}{}", f(n)),
        '>' => format!("{}{sign}{body}", f(n)),
        '=' => format!("{sign}{}{body}", f(n)),
        _ => format!("{}{sign}{body}{}", f(n / 2), f(n - n / 2)),
    }
}

fn fmt_float(f: f64, ty: char, prec: Option<usize>, alt: bool) -> String {
    let p = prec.unwrap_or(6);
    match ty {
        'f' | 'F' => format!("{:.*}", p, f),
        'e' | 'E' => {
            let s = format!("{:.*e}", p, f);
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            let e: i32 = e.parse().unwrap_or(0);
            let r = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
            if ty == 'E' {
                r.to_uppercase()
            } else {
                r
            }
        }
        '%' => format!("{:.*}%", p, f * 100.0),
        'g' | 'G' => {
            let p = if p == 0 { 1 } else { p };
            if f == 0.0 {
                return "0".into();
            }
            let exp = f.abs().log10().floor() as i32;
            let s = if exp < -4 || exp >= p as i32 {
                fmt_float(f, 'e', Some(p - 1), alt)
            } else {
                format!("{:.*}", (p as i32 - 1 - exp).max(0) as usize, f)
            };
            if alt {
                return s;
            }
            // Strip trailing zeros.
            if let Some((m, e)) = s.split_once('e') {
                let m = if m.contains('.') {
                    m.trim_end_matches('0').trim_end_matches('.')
                } else {
                    m
                };
                format!("{m}e{e}")
            } else if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            }
        }
        _ => {
            // No type: like repr, or 'g'-ish with precision.
            match prec {
                Some(_) => fmt_float(f, 'g', prec, alt),
                None => float_repr(f),
            }
        }
    }
}

/// `format(v, spec)` for built-in values.
pub fn format_value(it: &Interp, v: &Value, spec: &str) -> PyResult<String> {
    if spec.is_empty() {
        return it.to_str(v);
    }
    let sp = parse_spec(spec).ok_or_else(|| it.exc("ValueError", "Invalid format specifier"))?;
    match v {
        Value::Int(_) | Value::Bool(_)
            if !matches!(sp.ty, Some('f' | 'F' | 'e' | 'E' | 'g' | 'G' | '%')) =>
        {
            let i = match v {
                Value::Int(i) => *i,
                Value::Bool(b) => *b as i64,
                _ => 0,
            };
            if matches!(v, Value::Bool(_)) && sp.ty.is_none() {
                return format_str(it, &it.to_str(v)?, spec);
            }
            let mag = i.unsigned_abs();
            let body = match sp.ty {
                Some('x') => format!("{}{mag:x}", if sp.alt { "0x" } else { "" }),
                Some('X') => format!("{}{mag:X}", if sp.alt { "0X" } else { "" }),
                Some('o') => format!("{}{mag:o}", if sp.alt { "0o" } else { "" }),
                Some('b') => format!("{}{mag:b}", if sp.alt { "0b" } else { "" }),
                Some('c') => char::from_u32(i as u32)
                    .map(String::from)
                    .unwrap_or_default(),
                Some('d') | Some('n') | None => mag.to_string(),
                Some(t) => {
                    return Err(it.exc(
                        "ValueError",
                        format!("Unknown format code '{t}' for object of type 'int'"),
                    ))
                }
            };
            let body = match sp.comma {
                Some(c) => group(&body, c),
                None => body,
            };
            let sign = sign_str(i < 0, sp.sign);
            Ok(pad(&sp, sign, &body, true))
        }
        Value::Int(_) | Value::Bool(_) | Value::Float(_) => {
            let f = match v {
                Value::Int(i) => *i as f64,
                Value::Bool(b) => *b as i64 as f64,
                Value::Float(f) => *f,
                _ => 0.0,
            };
            let ty = sp.ty.unwrap_or(' ');
            if !"fFeEgG% ".contains(ty) {
                return Err(it.exc(
                    "ValueError",
                    format!("Unknown format code '{ty}' for object of type 'float'"),
                ));
            }
            let body = fmt_float(f.abs(), ty, sp.precision, sp.alt);
            let body = match sp.comma {
                Some(c) => group(&body, c),
                None => body,
            };
            let sign = sign_str(
                f.is_sign_negative() && f != 0.0 || (f == 0.0 && f.is_sign_negative()),
                sp.sign,
            );
            Ok(pad(&sp, sign, &body, true))
        }
        _ => {
            let s = it.to_str(v)?;
            format_str(it, &s, spec)
        }
    }
}

fn sign_str(neg: bool, sign: char) -> &'static str {
    if neg {
        "-"
    } else {
        match sign {
            '+' => "+",
            ' ' => " ",
            _ => "",
        }
    }
}

/// `format(s, spec)` for strings.
pub fn format_str(it: &Interp, s: &str, spec: &str) -> PyResult<String> {
    if spec.is_empty() {
        return Ok(s.to_string());
    }
    let sp = parse_spec(spec).ok_or_else(|| it.exc("ValueError", "Invalid format specifier"))?;
    if let Some(t) = sp.ty {
        if t != 's' {
            return Err(it.exc(
                "ValueError",
                format!("Unknown format code '{t}' for object of type 'str'"),
            ));
        }
    }
    let body: String = match sp.precision {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    };
    Ok(pad(&sp, "", &body, false))
}

/// `template.format(*args, **kw)`
pub fn str_format(
    it: &Interp,
    tpl: &str,
    a: &[Value],
    kw: &[(Rc<str>, Value)],
) -> PyResult<String> {
    let mut out = String::new();
    let chars: Vec<char> = tpl.chars().collect();
    let mut i = 0;
    let mut auto = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            if chars.get(i + 1) == Some(&'{') {
                out.push('{');
                i += 2;
                continue;
            }
            let mut j = i + 1;
            let mut depth = 1;
            while j < chars.len() {
                if chars[j] == '{' {
                    depth += 1;
                } else if chars[j] == '}' {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                j += 1;
            }
            let field: String = chars[i + 1..j].iter().collect();
            let (head, spec) = match field.find(':') {
                Some(p) => (field[..p].to_string(), field[p + 1..].to_string()),
                None => (field.clone(), String::new()),
            };
            let (name, conv) = match head.find('!') {
                Some(p) => (head[..p].to_string(), head[p + 1..].chars().next()),
                None => (head, None),
            };
            let (base, attrs) = match name.find('.') {
                Some(p) => (name[..p].to_string(), Some(name[p + 1..].to_string())),
                None => (name, None),
            };
            let mut v = if base.is_empty() {
                let v = a.get(auto).cloned();
                auto += 1;
                v
            } else if let Ok(n) = base.parse::<usize>() {
                a.get(n).cloned()
            } else {
                kw.iter()
                    .find(|(k, _)| **k == *base)
                    .map(|(_, v)| v.clone())
            }
            .ok_or_else(|| {
                it.exc(
                    "IndexError",
                    "Replacement index out of range for positional args tuple",
                )
            })?;
            if let Some(attrs) = attrs {
                for at in attrs.split('.') {
                    v = it.getattr(&v, &crate::compile::Name::of(at))?;
                }
            }
            let v = match conv {
                Some('r') => Value::str(&it.repr(&v)?),
                Some('s') => Value::str(&it.to_str(&v)?),
                _ => v,
            };
            let spec = if spec.contains('{') {
                str_format(it, &spec, a, kw)?
            } else {
                spec
            };
            out.push_str(&it.format(&v, &spec)?);
            i = j + 1;
        } else if c == '}' {
            out.push('}');
            i += if chars.get(i + 1) == Some(&'}') { 2 } else { 1 };
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

/// `template % args`
pub fn percent(it: &Interp, tpl: &str, args: &Value) -> PyResult<String> {
    let items: Vec<Value> = match args {
        Value::Tuple(t) => t.items.to_vec(),
        other => vec![other.clone()],
    };
    let mut out = String::new();
    let chars: Vec<char> = tpl.chars().collect();
    let mut i = 0;
    let mut k = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        if chars.get(i) == Some(&'%') {
            out.push('%');
            i += 1;
            continue;
        }
        let st = i;
        while i < chars.len() && "-+ #0123456789.".contains(chars[i]) {
            i += 1;
        }
        let flags: String = chars[st..i].iter().collect();
        let ty = *chars
            .get(i)
            .ok_or_else(|| it.exc("ValueError", "incomplete format"))?;
        i += 1;
        let v = items
            .get(k)
            .cloned()
            .ok_or_else(|| it.type_error("not enough arguments for format string"))?;
        k += 1;
        let (align_left, rest) = match flags.strip_prefix('-') {
            Some(r) => (true, r.to_string()),
            None => (false, flags.clone()),
        };
        let s = match ty {
            's' => {
                let s = it.to_str(&v)?;
                format_str(
                    it,
                    &s,
                    &format!("{}{}", if align_left { "<" } else { ">" }, rest),
                )?
            }
            'r' => {
                let s = it.repr(&v)?;
                format_str(
                    it,
                    &s,
                    &format!("{}{}", if align_left { "<" } else { ">" }, rest),
                )?
            }
            'd' | 'i' => {
                let v = match v {
                    Value::Float(f) => Value::Int(f as i64),
                    v => v,
                };
                format_value(
                    it,
                    &v,
                    &format!("{}{}d", if align_left { "<" } else { "" }, rest),
                )?
            }
            'f' | 'e' | 'g' | 'x' | 'o' | 'X' => format_value(
                it,
                &v,
                &format!("{}{}{}", if align_left { "<" } else { "" }, rest, ty),
            )?,
            _ => return Err(it.exc("ValueError", format!("unsupported format character '{ty}'"))),
        };
        out.push_str(&s);
    }
    if k < items.len() && matches!(args, Value::Tuple(_)) {
        return Err(it.type_error("not all arguments converted during string formatting"));
    }
    Ok(out)
}
