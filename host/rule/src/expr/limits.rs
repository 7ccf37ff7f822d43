//! Resource bounds of one expression, so that a rule cannot make `simulate`, `run` or a worker
//! run for minutes or take gigabytes (`[1]*100000000`, `'x'|indent(1000000000)`).
//!
//! minijinja bounds neither the size of one operation's result (`'x' * n` reserves up to
//! 100 MB at once, `indent(n)` any amount) nor, without its `fuel` feature, the number of
//! operations; its compiler also folds constant operations (`'x' * 100000000`) while compiling,
//! so even `sluice validate` paid for them. Its operators cannot be overridden, so:
//!
//! - **Operators** `*`, `+` and `~`, the three that can make a value larger than their
//!   operands, are rewritten before minijinja compiles the expression: the expression is parsed
//!   with minijinja's own parser and printed back with `a * b` as `__sluice_mul(a, b)` (and
//!   `__sluice_add`, `__sluice_concat`). Those functions estimate the size of the result from the
//!   operands, charge it to the expression's budget, and only then let minijinja do the
//!   operation, so the result is what minijinja would have made. Nothing is folded at compile
//!   time any more, since a call is not a constant.
//! - **Filters** that allocate or iterate (`indent`, `replace`, `join`, `format`, `batch`,
//!   `slice`, `list`, `sort`...) are wrapped the same way: the estimate is charged before the
//!   builtin runs. Filters that only read (`length`, `first`, `default`, `int`...) are left
//!   alone. `debug()` (a dump of the whole context) is removed.
//! - **Fuel**: at most [`FUEL`] minijinja instructions per evaluation.
//! - **Budget**: at most [`MAX_WORK`] bytes (estimated) of intermediate data per evaluation,
//!   counted in a thread-local (an evaluation runs on one thread); walking a lazy value to
//!   measure it never goes past what is left, so measuring is bounded too.
//! - **Results**: a rendered value is at most [`MAX_VALUE_BYTES`] of JSON, measured while
//!   serializing (stopping at the limit), and one rendered `with:` at most [`MAX_INPUT_BYTES`]
//!   of what expressions produced.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::sync::OnceLock;

use minijinja::machinery::ast;
use minijinja::value::{Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior, filters};

/// The largest rendered value, in bytes of JSON (the limit on an op's output too).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// The most that the expressions of one rendered `with:` may produce together, in bytes of
/// JSON.
pub const MAX_INPUT_BYTES: usize = 4 << 20;
/// The most intermediate data one evaluation may make, in (estimated) bytes: each value made
/// by `*`, `+`, `~` or an allocating filter is charged before it is made.
pub const MAX_WORK: usize = 8 << 20;
/// minijinja instructions per evaluation. Expressions have no loops, so this bounds their
/// length more than their running time; a long condition uses a few hundred.
pub const FUEL: u64 = 10_000;

const MUL: &str = "__sluice_mul";
const ADD: &str = "__sluice_add";
const CONCAT: &str = "__sluice_concat";

/// The functions the rewriting introduces: not names a rule reads.
pub(super) const HELPERS: &[&str] = &[MUL, ADD, CONCAT];

thread_local! {
    static LEFT: Cell<usize> = const { Cell::new(MAX_WORK) };
    static EXCEEDED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Starts an evaluation on this thread: a full budget.
pub(super) fn start() {
    LEFT.set(MAX_WORK);
    EXCEEDED.take();
}

/// What limit the evaluation that just failed went over, if that is why it failed.
pub(super) fn exceeded() -> Option<String> {
    EXCEEDED.take()
}

/// `n` bytes for people: `512 bytes`, `3 KiB`, `1.5 MiB`, `95.4 GiB`.
pub(super) fn bytes(n: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let text = format!("{v:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// Takes `units` (`None`: more than is left) from the budget, or fails saying what `what`
/// would have made.
fn charge(units: Option<usize>, what: &str) -> Result<(), Error> {
    let left = LEFT.get();
    match units {
        Some(u) if u <= left => {
            LEFT.set(left - u);
            Ok(())
        }
        _ => {
            let made = match units {
                Some(u) => format!("about {}", bytes(u)),
                None => format!("more than the {} left", bytes(left)),
            };
            let msg = format!(
                "the limit of {} of intermediate data per expression ({what} would make {made})",
                bytes(MAX_WORK)
            );
            LEFT.set(0);
            EXCEEDED.set(Some(msg.clone()));
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        }
    }
}

/// Estimated bytes of `v` (about what formatting it makes, plus 8 per value), or `None` once
/// over `limit`. Lazy sequences are walked, at most `limit` steps.
fn size_up_to(v: &Value, limit: usize) -> Option<usize> {
    walked(v, limit, 0)
}

/// [`size_up_to`], each value also costing `indent` bytes per level it is nested at (what
/// pretty-printing adds).
fn walked(v: &Value, limit: usize, indent: usize) -> Option<usize> {
    fn walk(v: &Value, total: &mut usize, limit: usize, indent: usize, depth: usize) -> bool {
        *total = total
            .saturating_add(8)
            .saturating_add(indent.saturating_mul(depth));
        match v.kind() {
            ValueKind::String => {
                *total = total.saturating_add(v.as_str().map_or(0, str::len));
            }
            ValueKind::Bytes => {
                *total = total.saturating_add(v.as_bytes().map_or(0, <[u8]>::len));
            }
            ValueKind::Seq | ValueKind::Iterable => {
                let Ok(items) = v.try_iter() else {
                    return *total <= limit;
                };
                for item in items {
                    if !walk(&item, total, limit, indent, depth + 1) {
                        return false;
                    }
                }
            }
            ValueKind::Map => {
                let Ok(keys) = v.try_iter() else {
                    return *total <= limit;
                };
                for key in keys {
                    let item = v.get_item(&key).unwrap_or_default();
                    if !walk(&key, total, limit, indent, depth + 1)
                        || !walk(&item, total, limit, indent, depth + 1)
                    {
                        return false;
                    }
                }
            }
            ValueKind::Plain => *total = total.saturating_add(16),
            _ => {}
        }
        *total <= limit
    }
    let mut total = 0;
    walk(v, &mut total, limit, indent, 0).then_some(total)
}

/// [`size_up_to`] what is left of the budget.
fn size(v: &Value) -> Option<usize> {
    size_up_to(v, LEFT.get())
}

fn add_sizes(values: &[Value]) -> Option<usize> {
    values
        .iter()
        .try_fold(0usize, |acc, v| acc.checked_add(size(v)?))
}

/// An evaluation of `a OP b` in a plain environment: minijinja's own operator, once charged.
fn delegate(op: &str, a: &Value, b: &Value) -> Result<Value, Error> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env
    });
    let expr = env.compile_expression_owned(format!("a {op} b"))?;
    expr.eval(Value::from_pairs([("a", a.clone()), ("b", b.clone())]))
}

fn is_seq(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable)
}

/// `a * b`: repeating a string or a sequence is charged for the whole result.
fn mul(a: &Value, b: &Value) -> Result<Value, Error> {
    let repeated = |x: &Value, n: &Value| -> Option<Option<usize>> {
        let n = n.as_usize()?;
        if let Some(s) = x.as_str() {
            Some(s.len().checked_mul(n))
        } else if is_seq(x) {
            Some(size(x).and_then(|one| one.checked_mul(n)))
        } else {
            None
        }
    };
    if let Some(units) = repeated(a, b).or_else(|| repeated(b, a)) {
        charge(units, "`*`")?;
    }
    delegate("*", a, b)
}

/// `a + b`: joining strings or sequences is charged for both.
fn add(a: &Value, b: &Value) -> Result<Value, Error> {
    if (a.as_str().is_some() && b.as_str().is_some())
        || (matches!(a.kind(), ValueKind::Seq | ValueKind::Iterable)
            && matches!(b.kind(), ValueKind::Seq | ValueKind::Iterable))
    {
        charge(add_sizes(&[a.clone(), b.clone()]), "`+`")?;
    }
    delegate("+", a, b)
}

/// `a ~ b`: formatting both as text is charged for both.
fn concat(a: &Value, b: &Value) -> Result<Value, Error> {
    charge(add_sizes(&[a.clone(), b.clone()]), "`~`")?;
    delegate("~", a, b)
}

/// `a OP b OP c ...`, left to right: a chain of one operator is one call, not a nesting.
fn fold(args: &[Value], op: fn(&Value, &Value) -> Result<Value, Error>) -> Result<Value, Error> {
    let mut items = args.iter();
    let mut acc = items.next().cloned().unwrap_or_default();
    for b in items {
        acc = op(&acc, b)?;
    }
    Ok(acc)
}

/// What a wrapped filter is charged before it runs.
#[derive(Clone, Copy)]
enum Cost {
    /// `factor` times the bytes of the value.
    Value(usize),
    /// Every argument, the value included.
    All,
    Indent,
    Replace,
    Join,
    Split,
    Lines,
    Format,
    Batch,
    Slice,
    Sum,
    /// A test per item, with the test's arguments.
    PerItem,
    Pretty,
}

/// The positional argument `pos` (0 is the value) or the keyword `name`.
fn arg<'a>(args: &'a [Value], pos: usize, name: &str) -> Option<Cow<'a, Value>> {
    let (kwargs, positional) = match args.split_last() {
        Some((last, rest)) if last.is_kwargs() => (Some(last), rest),
        _ => (None, args),
    };
    if let Some(v) = positional.get(pos) {
        return Some(Cow::Borrowed(v));
    }
    kwargs
        .and_then(|k| k.get_attr(name).ok())
        .filter(|v| !v.is_undefined())
        .map(Cow::Owned)
}

/// Bytes of a value used as text: a string's own, or what formatting it would make.
fn text_len(v: &Value) -> Option<usize> {
    match v.as_str() {
        Some(s) => Some(s.len()),
        None => size(v),
    }
}

/// The number of items in `v`, counted within the budget.
fn count(v: &Value) -> Option<usize> {
    match v.len() {
        Some(n) => Some(n),
        None => size(v),
    }
}

impl Cost {
    fn estimate(self, args: &[Value]) -> Option<usize> {
        let value = args.first().cloned().unwrap_or_default();
        let text = value.as_str().unwrap_or_default();
        let usize_arg = |pos, name| arg(args, pos, name).and_then(|v| v.as_usize());
        match self {
            Cost::Value(factor) => size(&value)?.checked_mul(factor),
            Cost::All => add_sizes(args),
            Cost::Indent => {
                let width = match arg(args, 1, "width") {
                    Some(w) => w.as_usize()?,
                    None => 4,
                };
                let lines = text.bytes().filter(|&b| b == b'\n').count() + 2;
                text_len(&value)?.checked_add(lines.checked_mul(width)?)
            }
            Cost::Replace => {
                let from = arg(args, 1, "old")
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                let to = text_len(&*arg(args, 2, "new")?)?;
                let hits = if from.is_empty() {
                    text.chars().count() + 1
                } else {
                    text.matches(from.as_str()).count()
                };
                text_len(&value)?.checked_add(hits.checked_mul(to)?)
            }
            Cost::Join => {
                let joiner = arg(args, 1, "d").map_or(Some(0), |j| text_len(&j))?;
                size(&value)?.checked_add(count(&value)?.checked_mul(joiner)?)
            }
            Cost::Split => {
                let pieces = match arg(args, 1, "split").filter(|s| !s.is_none()) {
                    Some(sep) => match sep.as_str() {
                        Some("") | None => text.len() + 1,
                        Some(sep) => text.matches(sep).count() + 1,
                    },
                    None => text.split_whitespace().count() + 1,
                };
                text.len().checked_add(pieces.checked_mul(8)?)
            }
            Cost::Lines => text
                .len()
                .checked_add((text.lines().count() + 1).checked_mul(8)?),
            Cost::Format => {
                // Each `%` may format any argument, padded to any width or precision written
                // in the format string.
                let fmt = text;
                let fields = fmt.matches('%').count();
                let mut numbers: usize = 0;
                for run in fmt.split(|c: char| !c.is_ascii_digit()) {
                    if !run.is_empty() {
                        numbers = numbers.checked_add(run.parse::<usize>().ok()?)?;
                    }
                }
                let args_size = add_sizes(args.get(1..).unwrap_or_default())?;
                fmt.len()
                    .checked_add(fields.checked_mul(args_size)?)?
                    .checked_add(numbers)
            }
            Cost::Batch | Cost::Slice => {
                let n = usize_arg(1, "count").unwrap_or(0);
                let fill = match arg(args, 2, "fill_with") {
                    Some(f) => size(&f)?,
                    None if matches!(self, Cost::Slice) => 0,
                    None => return size(&value),
                };
                size(&value)?.checked_add(n.checked_mul(fill.checked_add(8)?)?)
            }
            Cost::Sum => {
                let start = arg(args, 2, "start");
                let all = size(&value)?;
                match start {
                    // Adding strings or lists copies what came before each time.
                    Some(s) if !s.is_number() => all.checked_mul(count(&value)?.checked_add(1)?),
                    _ => Some(all),
                }
            }
            Cost::PerItem => {
                let test_args = add_sizes(args.get(1..).unwrap_or_default())?;
                size(&value)?.checked_add(count(&value)?.checked_mul(test_args)?)
            }
            // `{:#?}` puts each value on its own line, indented by its depth.
            Cost::Pretty => walked(&value, LEFT.get(), 4)?.checked_mul(2),
        }
    }
}

/// The builtin filters that allocate or iterate, with their cost. The others (`length`,
/// `count`, `first`, `default`, `d`, `attr`, `round`, `abs`, `int`, `float`, `bool`) only read.
fn wrapped_filters() -> Vec<(&'static str, Value, Cost)> {
    vec![
        ("safe", Value::from_function(filters::safe), Cost::Value(1)),
        (
            "escape",
            Value::from_function(filters::escape),
            Cost::Value(6),
        ),
        ("e", Value::from_function(filters::escape), Cost::Value(6)),
        (
            "lower",
            Value::from_function(filters::lower),
            Cost::Value(3),
        ),
        (
            "upper",
            Value::from_function(filters::upper),
            Cost::Value(3),
        ),
        (
            "title",
            Value::from_function(filters::title),
            Cost::Value(3),
        ),
        (
            "capitalize",
            Value::from_function(filters::capitalize),
            Cost::Value(3),
        ),
        ("trim", Value::from_function(filters::trim), Cost::Value(1)),
        (
            "replace",
            Value::from_function(filters::replace),
            Cost::Replace,
        ),
        (
            "dictsort",
            Value::from_function(filters::dictsort),
            Cost::Value(3),
        ),
        (
            "items",
            Value::from_function(filters::items),
            Cost::Value(3),
        ),
        (
            "reverse",
            Value::from_function(filters::reverse),
            Cost::Value(1),
        ),
        ("join", Value::from_function(filters::join), Cost::Join),
        ("split", Value::from_function(filters::split), Cost::Split),
        ("lines", Value::from_function(filters::lines), Cost::Lines),
        ("last", Value::from_function(filters::last), Cost::Value(1)),
        ("min", Value::from_function(filters::min), Cost::Value(1)),
        ("max", Value::from_function(filters::max), Cost::Value(1)),
        ("sort", Value::from_function(filters::sort), Cost::Value(1)),
        ("list", Value::from_function(filters::list), Cost::Value(1)),
        (
            "string",
            Value::from_function(filters::string),
            Cost::Value(1),
        ),
        ("batch", Value::from_function(filters::batch), Cost::Batch),
        ("slice", Value::from_function(filters::slice), Cost::Slice),
        ("sum", Value::from_function(filters::sum), Cost::Sum),
        (
            "indent",
            Value::from_function(filters::indent),
            Cost::Indent,
        ),
        (
            "select",
            Value::from_function(filters::select),
            Cost::PerItem,
        ),
        (
            "reject",
            Value::from_function(filters::reject),
            Cost::PerItem,
        ),
        (
            "selectattr",
            Value::from_function(filters::selectattr),
            Cost::PerItem,
        ),
        (
            "rejectattr",
            Value::from_function(filters::rejectattr),
            Cost::PerItem,
        ),
        ("map", Value::from_function(filters::map), Cost::Value(1)),
        (
            "groupby",
            Value::from_function(filters::groupby),
            Cost::Value(2),
        ),
        (
            "unique",
            Value::from_function(filters::unique),
            Cost::Value(1),
        ),
        ("chain", Value::from_function(filters::chain), Cost::All),
        ("zip", Value::from_function(filters::zip), Cost::All),
        (
            "pprint",
            Value::from_function(filters::pprint),
            Cost::Pretty,
        ),
        (
            "format",
            Value::from_function(filters::format),
            Cost::Format,
        ),
    ]
}

/// Bounds `env`: fuel, the operator functions, the wrapped filters; no `debug()`.
pub(super) fn install(env: &mut Environment<'static>) {
    env.set_fuel(Some(FUEL));
    env.remove_global("debug");
    env.add_function(MUL, |args: Rest<Value>| fold(&args, mul));
    env.add_function(ADD, |args: Rest<Value>| fold(&args, add));
    env.add_function(CONCAT, |args: Rest<Value>| fold(&args, concat));
    for (name, builtin, cost) in wrapped_filters() {
        let what = format!("`{name}`");
        env.add_filter(name, move |state: &mut State, args: Rest<ValueOrKwargs>| {
            let args = args.into_values();
            charge(cost.estimate(&args), &what)?;
            builtin.call(state, &args)
        });
    }
}

/// `expr` with `*`, `+` and `~` as calls of the bounded functions; borrowed when it has none.
pub(super) fn rewrite(expr: &str) -> Result<Cow<'_, str>, Error> {
    let ast = minijinja::machinery::parse_expr(expr)?;
    if !has_growing_op(&ast) {
        return Ok(Cow::Borrowed(expr));
    }
    let mut out = String::with_capacity(expr.len() * 2);
    print(&ast, expr, &mut out);
    Ok(Cow::Owned(out))
}

fn growing(op: &ast::BinOpKind) -> Option<&'static str> {
    match op {
        ast::BinOpKind::Mul => Some(MUL),
        ast::BinOpKind::Add => Some(ADD),
        ast::BinOpKind::Concat => Some(CONCAT),
        _ => None,
    }
}

/// Calls `f` on each direct sub-expression of `e`.
fn children<'a>(e: &'a ast::Expr<'a>, f: &mut dyn FnMut(&'a ast::Expr<'a>)) {
    fn args<'a>(args: &'a [ast::CallArg<'a>], f: &mut dyn FnMut(&'a ast::Expr<'a>)) {
        for a in args {
            match a {
                ast::CallArg::Pos(x)
                | ast::CallArg::Kwarg(_, x)
                | ast::CallArg::PosSplat(x)
                | ast::CallArg::KwargSplat(x) => f(x),
            }
        }
    }
    match e {
        ast::Expr::Var(_) | ast::Expr::Const(_) => {}
        ast::Expr::Slice(s) => {
            f(&s.expr);
            for x in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                f(x);
            }
        }
        ast::Expr::UnaryOp(u) => f(&u.expr),
        ast::Expr::BinOp(b) => {
            f(&b.left);
            f(&b.right);
        }
        ast::Expr::Compare(c) => {
            f(&c.expr);
            for op in &c.ops {
                f(&op.expr);
            }
        }
        ast::Expr::IfExpr(i) => {
            f(&i.test_expr);
            f(&i.true_expr);
            if let Some(x) = &i.false_expr {
                f(x);
            }
        }
        ast::Expr::Filter(x) => {
            if let Some(e) = &x.expr {
                f(e);
            }
            args(&x.args, f);
        }
        ast::Expr::Test(t) => {
            f(&t.expr);
            args(&t.args, f);
        }
        ast::Expr::GetAttr(g) => f(&g.expr),
        ast::Expr::GetItem(g) => {
            f(&g.expr);
            f(&g.subscript_expr);
        }
        ast::Expr::Call(c) => {
            f(&c.expr);
            args(&c.args, f);
        }
        ast::Expr::List(l) => l.items.iter().for_each(f),
        ast::Expr::Tuple(t) => t.items.iter().for_each(f),
        ast::Expr::Map(m) => m.keys.iter().chain(m.values.iter()).for_each(f),
    }
}

fn has_growing_op(e: &ast::Expr<'_>) -> bool {
    if let ast::Expr::BinOp(b) = e
        && growing(&b.op).is_some()
    {
        return true;
    }
    let mut found = false;
    children(e, &mut |c| found = found || has_growing_op(c));
    found
}

fn bin_op_text(op: &ast::BinOpKind) -> &'static str {
    use ast::BinOpKind::*;
    match op {
        Eq => "==",
        Ne => "!=",
        Lt => "<",
        Lte => "<=",
        Gt => ">",
        Gte => ">=",
        ScAnd => "and",
        ScOr => "or",
        Add => "+",
        Sub => "-",
        Mul => "*",
        Div => "/",
        FloorDiv => "//",
        Rem => "%",
        Pow => "**",
        Concat => "~",
        In => "in",
    }
}

fn compare_op_text(op: &ast::CompareOpKind) -> &'static str {
    use ast::CompareOpKind::*;
    match op {
        Eq => "==",
        Ne => "!=",
        Lt => "<",
        Lte => "<=",
        Gt => ">",
        Gte => ">=",
        In => "in",
        NotIn => "not in",
    }
}

/// Prints `e` where an operand or a postfix base goes: bare when it ends in a name or a
/// bracket, else in parentheses.
fn print_operand(e: &ast::Expr<'_>, src: &str, out: &mut String) {
    let bare = matches!(
        e,
        ast::Expr::Var(_)
            | ast::Expr::GetAttr(_)
            | ast::Expr::GetItem(_)
            | ast::Expr::Slice(_)
            | ast::Expr::Call(_)
            | ast::Expr::List(_)
            | ast::Expr::Tuple(_)
            | ast::Expr::Map(_)
    ) || matches!(e, ast::Expr::BinOp(b) if growing(&b.op).is_some());
    if bare {
        print(e, src, out);
    } else {
        out.push('(');
        print(e, src, out);
        out.push(')');
    }
}

fn print_args(args: &[ast::CallArg<'_>], src: &str, out: &mut String) {
    out.push('(');
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match a {
            ast::CallArg::Pos(x) => print(x, src, out),
            ast::CallArg::Kwarg(name, x) => {
                out.push_str(name);
                out.push('=');
                print(x, src, out);
            }
            ast::CallArg::PosSplat(x) => {
                out.push('*');
                print_operand(x, src, out);
            }
            ast::CallArg::KwargSplat(x) => {
                out.push_str("**");
                print_operand(x, src, out);
            }
        }
    }
    out.push(')');
}

fn print_list(items: &[ast::Expr<'_>], src: &str, out: &mut String) {
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        print(x, src, out);
    }
}

/// Prints `e` as minijinja source that parses back to the same tree, except that `*`, `+` and
/// `~` become calls. Constants are copied from the source (`src`), so they read back exactly.
fn print(e: &ast::Expr<'_>, src: &str, out: &mut String) {
    match e {
        ast::Expr::Var(v) => out.push_str(v.id),
        ast::Expr::Const(c) => {
            let span = c.span();
            out.push_str(&src[span.start_offset as usize..span.end_offset as usize]);
        }
        ast::Expr::Slice(s) => {
            print_operand(&s.expr, src, out);
            out.push('[');
            if let Some(x) = &s.start {
                print(x, src, out);
            }
            out.push(':');
            if let Some(x) = &s.stop {
                print(x, src, out);
            }
            if let Some(x) = &s.step {
                out.push(':');
                print(x, src, out);
            }
            out.push(']');
        }
        ast::Expr::UnaryOp(u) => {
            out.push_str(match u.op {
                ast::UnaryOpKind::Not => "not ",
                ast::UnaryOpKind::Neg => "-",
            });
            print_operand(&u.expr, src, out);
        }
        ast::Expr::BinOp(b) => match growing(&b.op) {
            Some(function) => {
                // A left-nested chain of one operator (`a ~ b ~ c`) becomes one call.
                let mut operands = vec![&b.right];
                let mut left = &b.left;
                while let ast::Expr::BinOp(inner) = left
                    && std::mem::discriminant(&inner.op) == std::mem::discriminant(&b.op)
                {
                    operands.push(&inner.right);
                    left = &inner.left;
                }
                operands.push(left);
                out.push_str(function);
                out.push('(');
                for (i, x) in operands.iter().rev().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    print(x, src, out);
                }
                out.push(')');
            }
            None => {
                print_operand(&b.left, src, out);
                let _ = write!(out, " {} ", bin_op_text(&b.op));
                print_operand(&b.right, src, out);
            }
        },
        ast::Expr::Compare(c) => {
            print_operand(&c.expr, src, out);
            for op in &c.ops {
                let _ = write!(out, " {} ", compare_op_text(&op.op));
                print_operand(&op.expr, src, out);
            }
        }
        ast::Expr::IfExpr(i) => {
            print_operand(&i.true_expr, src, out);
            out.push_str(" if ");
            print_operand(&i.test_expr, src, out);
            if let Some(x) = &i.false_expr {
                out.push_str(" else ");
                print_operand(x, src, out);
            }
        }
        ast::Expr::Filter(f) => {
            if let Some(x) = &f.expr {
                print_operand(x, src, out);
            }
            out.push('|');
            out.push_str(f.name);
            print_args(&f.args, src, out);
        }
        ast::Expr::Test(t) => {
            print_operand(&t.expr, src, out);
            out.push_str(" is ");
            out.push_str(t.name);
            if !t.args.is_empty() {
                print_args(&t.args, src, out);
            }
        }
        ast::Expr::GetAttr(g) => {
            print_operand(&g.expr, src, out);
            out.push('.');
            out.push_str(g.name);
        }
        ast::Expr::GetItem(g) => {
            print_operand(&g.expr, src, out);
            out.push('[');
            print(&g.subscript_expr, src, out);
            out.push(']');
        }
        ast::Expr::Call(c) => {
            print_operand(&c.expr, src, out);
            print_args(&c.args, src, out);
        }
        ast::Expr::List(l) => {
            out.push('[');
            print_list(&l.items, src, out);
            out.push(']');
        }
        ast::Expr::Tuple(t) => {
            out.push('(');
            print_list(&t.items, src, out);
            if !t.items.is_empty() {
                out.push(',');
            }
            out.push(')');
        }
        ast::Expr::Map(m) => {
            out.push('{');
            for (i, (k, v)) in m.keys.iter().zip(&m.values).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print(k, src, out);
                out.push_str(": ");
                print(v, src, out);
            }
            out.push('}');
        }
    }
}

/// Serializes `v` as JSON if it takes at most `limit` bytes; `None` when it takes more (the
/// serializer stops there, so a huge lazy value is not walked to its end).
pub(super) fn to_json_within(
    v: &Value,
    limit: usize,
) -> Result<Option<(serde_json::Value, usize)>, serde_json::Error> {
    struct Count {
        n: usize,
        limit: usize,
    }
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.n += buf.len();
            if self.n > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count { n: 0, limit };
    match serde_json::to_writer(&mut count, v) {
        Ok(()) => {}
        Err(_) if count.n > limit => return Ok(None),
        Err(e) => return Err(e),
    }
    serde_json::to_value(v).map(|json| Some((json, count.n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_operators_become_calls_and_chains_one_call() {
        assert_eq!(
            rewrite("a ~ b ~ c * 2").unwrap(),
            "__sluice_concat(a, b, __sluice_mul(c, 2))"
        );
        assert_eq!(
            rewrite("-(x.y + 1) if z is odd else [1][0:1]|join('+')").unwrap(),
            "(-__sluice_add(x.y, 1)) if (z is odd) else ([1][0:1]|join('+'))"
        );
        // Nothing to bound: the text is compiled as written.
        assert!(matches!(
            rewrite("a - b|length"),
            Ok(Cow::Borrowed("a - b|length"))
        ));
        assert!(rewrite("a +").is_err());
    }

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(8 << 20), "8 MiB");
        assert_eq!(bytes(1_600_000_000), "1.5 GiB");
    }
}
