//! Attributes that record each call of a function as a TraceCraft step: `#[trace_llm]`,
//! `#[trace_tool]`, `#[trace_retrieval]`, `#[trace_agent]` and `#[trace_step(type = ...)]`.
//!
//! **Use them through the `tracecraft` crate** (`tracecraft::trace_llm`, with its default
//! `macros` feature): the generated code calls `::tracecraft`, whose step guards do the work.
//! The crate's guide shows them in use; this page lists what each option does.
//!
//! Guarantees of the generated code:
//! - an argument named in `exclude_inputs` is recorded as `"[EXCLUDED]"` and its value is never
//!   read, serialized or copied (it does not even need to implement `Serialize`);
//!   with `capture_inputs = false` no argument is read; with `capture_outputs = false` the
//!   return value is not read;
//! - misuse is a compile error naming the problem: an unknown option (with the closest
//!   known one), a name in `exclude_inputs` that is not an argument, the attribute on
//!   something that is not a function;
//! - the function's behaviour is unchanged: same arguments, same return value, `return` and
//!   `?` work as before, panics still unwind (the step records `"panicked"`).
//!
//! # Options
//! | option | attributes | meaning |
//! |---|---|---|
//! | `name = "..."` | all | the step's name (default: the function's name) |
//! | `type = tool` or `type = "tool"` | `trace_step` (required) | the step type: agent, llm, tool, retrieval, memory, guardrail, evaluation, workflow, error |
//! | `model = "..."`, `provider = "..."` | `trace_llm`, `trace_step` | the model and its provider |
//! | `exclude_inputs = ["api_key"]` | all | arguments recorded as `"[EXCLUDED]"` |
//! | `capture_inputs = false` | all | record no argument |
//! | `capture_outputs = false` | all | do not record the return value |
//!
//! Arguments are recorded by name (each must implement `serde::Serialize` unless excluded);
//! `self` and arguments bound by a pattern other than a plain name are not recorded. The return
//! value is the output `"result"`; a `Result`'s `Ok` value is the output and its `Err` the
//! step's error (message from `Display`, type from the error's type name). A function
//! returning `()` has no output.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, LitBool, LitStr, Pat, ReturnType, Token, Type};
use tracecraft_core::StepType;

/// Records each call as an `llm` step: `#[trace_llm(name = "chat", model = "gpt-4o",
/// provider = "openai", exclude_inputs = ["api_key"])]`. Set token counts from inside with
/// `tracecraft::current_step().set_tokens(..)`.
#[proc_macro_attribute]
pub fn trace_llm(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Fixed(StepType::Llm, "trace_llm"), args, item)
}

/// Records each call as a `tool` step: `#[trace_tool]`, `#[trace_tool(capture_inputs = false)]`.
#[proc_macro_attribute]
pub fn trace_tool(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Fixed(StepType::Tool, "trace_tool"), args, item)
}

/// Records each call as a `retrieval` step.
#[proc_macro_attribute]
pub fn trace_retrieval(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(
        Kind::Fixed(StepType::Retrieval, "trace_retrieval"),
        args,
        item,
    )
}

/// Records each call as an `agent` step.
#[proc_macro_attribute]
pub fn trace_agent(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Fixed(StepType::Agent, "trace_agent"), args, item)
}

/// Records each call as a step of the given type: `#[trace_step(type = guardrail)]`.
#[proc_macro_attribute]
pub fn trace_step(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Any, args, item)
}

#[derive(Clone, Copy)]
enum Kind {
    /// A fixed step type, and the attribute's name.
    Fixed(StepType, &'static str),
    /// `trace_step`: the type is an option.
    Any,
}

impl Kind {
    fn attr(self) -> &'static str {
        match self {
            Kind::Fixed(_, name) => name,
            Kind::Any => "trace_step",
        }
    }

    fn options(self) -> &'static [&'static str] {
        const COMMON: &[&str] = &[
            "name",
            "exclude_inputs",
            "capture_inputs",
            "capture_outputs",
        ];
        match self {
            Kind::Fixed(StepType::Llm, _) => &[
                "name",
                "model",
                "provider",
                "exclude_inputs",
                "capture_inputs",
                "capture_outputs",
            ],
            Kind::Fixed(..) => COMMON,
            Kind::Any => &[
                "type",
                "name",
                "model",
                "provider",
                "exclude_inputs",
                "capture_inputs",
                "capture_outputs",
            ],
        }
    }
}

#[derive(Default)]
struct Options {
    step_type: Option<StepType>,
    name: Option<LitStr>,
    model: Option<LitStr>,
    provider: Option<LitStr>,
    exclude: Vec<LitStr>,
    capture_inputs: Option<bool>,
    capture_outputs: Option<bool>,
    seen: Vec<String>,
}

impl Options {
    fn parse(&mut self, kind: Kind, meta: syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_else(|| meta.path.to_token_stream().to_string().replace(' ', ""));
        let known = kind.options();
        if !known.contains(&key.as_str()) {
            let all = [
                "type",
                "name",
                "model",
                "provider",
                "exclude_inputs",
                "capture_inputs",
                "capture_outputs",
            ];
            let message = if all.contains(&key.as_str()) {
                format!(
                    "`{key}` is not an option of #[{}]; its options are: {}{}",
                    kind.attr(),
                    known.join(", "),
                    if key == "model" || key == "provider" {
                        " (use #[trace_llm] or #[trace_step(type = ..., model = ...)] for a model)"
                    } else {
                        ""
                    }
                )
            } else {
                let hint = closest(&key, known)
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                format!(
                    "unknown option `{key}` of #[{}]{hint} (options: {})",
                    kind.attr(),
                    known.join(", ")
                )
            };
            return Err(meta.error(message));
        }
        if self.seen.contains(&key) {
            return Err(meta.error(format!("`{key}` is given twice")));
        }
        self.seen.push(key.clone());
        let value = meta.value()?;
        match key.as_str() {
            "type" => {
                let (text, span) = if value.peek(LitStr) {
                    let s: LitStr = value.parse()?;
                    (s.value(), s.span())
                } else {
                    let id: syn::Ident = value.parse()?;
                    (id.to_string(), id.span())
                };
                let t = text.parse::<StepType>().map_err(|_| {
                    syn::Error::new(
                        span,
                        format!(
                            "unknown step type `{text}`; expected one of: {}",
                            StepType::ALL.map(StepType::as_str).join(", ")
                        ),
                    )
                })?;
                self.step_type = Some(t);
            }
            "name" => self.name = Some(value.parse()?),
            "model" => self.model = Some(value.parse()?),
            "provider" => self.provider = Some(value.parse()?),
            "capture_inputs" | "capture_outputs" => {
                let on = value
                    .parse::<LitBool>()
                    .map_err(|e| {
                        syn::Error::new(e.span(), format!("`{key}` takes `true` or `false`"))
                    })?
                    .value;
                if key == "capture_inputs" {
                    self.capture_inputs = Some(on);
                } else {
                    self.capture_outputs = Some(on);
                }
            }
            "exclude_inputs" => {
                let expected = |span| {
                    syn::Error::new(
                        span,
                        "`exclude_inputs` takes a list of argument names as strings: exclude_inputs = [\"api_key\"]",
                    )
                };
                let content;
                syn::bracketed!(content in value);
                let names = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)
                    .map_err(|e| expected(e.span()))?;
                self.exclude = names.into_iter().collect();
            }
            _ => unreachable!("every known option is handled"),
        }
        Ok(())
    }
}

/// The known option closest to `key` (at most 2 edits away).
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    known
        .iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The error, followed by the item unchanged (so that the error is the only one reported).
fn fail(err: syn::Error, item: TokenStream2) -> TokenStream {
    let err = err.to_compile_error();
    quote!(#err #item).into()
}

fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let item2 = TokenStream2::from(item.clone());
    let mut opts = Options::default();
    let parser = syn::meta::parser(|meta| opts.parse(kind, meta));
    if let Err(e) = syn::parse::Parser::parse(parser, args) {
        return fail(e, item2);
    }
    let Ok(func) = syn::parse::<ItemFn>(item) else {
        let err = syn::Error::new(
            Span::call_site(),
            format!(
                "#[{}] applies to functions only (`fn` or `async fn` with a body)",
                kind.attr()
            ),
        );
        return fail(err, item2);
    };
    if func.sig.constness.is_some() {
        let err = syn::Error::new(
            func.sig.constness.span(),
            format!(
                "#[{}] cannot record a `const fn` (recording is not possible at compile time)",
                kind.attr()
            ),
        );
        return fail(err, item2);
    }
    let step_type = match (kind, opts.step_type) {
        (Kind::Fixed(t, _), _) => t,
        (Kind::Any, Some(t)) => t,
        (Kind::Any, None) => {
            let err = syn::Error::new(
                Span::call_site(),
                format!(
                    "#[trace_step] needs a step type: #[trace_step(type = tool)] (one of: {})",
                    StepType::ALL.map(StepType::as_str).join(", ")
                ),
            );
            return fail(err, item2);
        }
    };
    match generate(step_type, &opts, func) {
        Ok(ts) => ts.into(),
        Err(e) => fail(e, item2),
    }
}

/// An argument the generated code records: its name, and whether it is excluded.
struct Arg {
    ident: syn::Ident,
    excluded: bool,
}

fn generate(step_type: StepType, opts: &Options, func: ItemFn) -> syn::Result<TokenStream2> {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let fn_name = sig.ident.to_string();
    let named: Vec<syn::Ident> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => match &*t.pat {
                Pat::Ident(p) => Some(p.ident.clone()),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect();
    for e in &opts.exclude {
        let v = e.value();
        if !named.iter().any(|n| n.to_string().eq_ignore_ascii_case(&v)) {
            let list = if named.is_empty() {
                "it has no named arguments".to_owned()
            } else {
                format!(
                    "its arguments are: {}",
                    named
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(syn::Error::new(
                e.span(),
                format!(
                    "exclude_inputs names `{v}`, which is not an argument of `{fn_name}`; {list}"
                ),
            ));
        }
    }
    let args: Vec<Arg> = named
        .into_iter()
        .map(|ident| {
            let s = ident.to_string();
            let excluded = opts
                .exclude
                .iter()
                .any(|e| e.value().eq_ignore_ascii_case(&s));
            Arg { ident, excluded }
        })
        .collect();

    let variant = syn::Ident::new(&format!("{step_type:?}"), Span::call_site());
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| LitStr::new(&fn_name, sig.ident.span()));
    let capture_inputs = opts.capture_inputs.unwrap_or(true);
    let capture_outputs = opts.capture_outputs.unwrap_or(true);
    let model = opts
        .model
        .as_ref()
        .map(|m| quote!(::core::option::Option::Some(#m)));
    let provider = opts
        .provider
        .as_ref()
        .map(|p| quote!(::core::option::Option::Some(#p)));
    let set_model = (model.is_some() || provider.is_some()).then(|| {
        let none = quote!(::core::option::Option::None);
        let m = model.clone().unwrap_or_else(|| none.clone());
        let p = provider.clone().unwrap_or(none);
        quote!(__tracecraft_b = ::tracecraft::__private::model(__tracecraft_b, #m, #p);)
    });
    let set_capture = [
        opts.capture_inputs
            .map(|on| quote!(__tracecraft_b = __tracecraft_b.capture_inputs(#on);)),
        opts.capture_outputs
            .map(|on| quote!(__tracecraft_b = __tracecraft_b.capture_outputs(#on);)),
    ];
    let inputs = args.iter().filter(|_| capture_inputs).map(|a| {
        let ident = &a.ident;
        let key = ident.to_string();
        if a.excluded {
            // The value is never touched.
            quote!(__tracecraft_b = ::tracecraft::__private::excluded(__tracecraft_b, #key);)
        } else {
            // Spanned at the argument: a type that cannot be recorded is reported there.
            quote_spanned!(ident.span()=>
                __tracecraft_b = ::tracecraft::__private::input(__tracecraft_b, #key, &#ident);
            )
        }
    });

    let ret_ty: Option<&Type> = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some(ty),
    };
    let unit = ret_ty.is_none_or(|t| matches!(t, Type::Tuple(t) if t.elems.is_empty()));
    let annotation = ret_ty
        .filter(|t| !mentions_impl(t.to_token_stream()))
        .map(|t| quote!(: #t));
    // Spanned at the return type: a type that cannot be recorded is reported there.
    let ret_span = ret_ty.map_or_else(Span::call_site, |t| t.span());
    let record_fn = if unit {
        None
    } else if is_result(ret_ty) {
        Some(if capture_outputs {
            quote_spanned!(ret_span=> ::tracecraft::__private::record_result)
        } else {
            quote_spanned!(ret_span=> ::tracecraft::__private::record_error)
        })
    } else if capture_outputs {
        Some(quote_spanned!(ret_span=> ::tracecraft::__private::record_output))
    } else {
        None
    };
    let record = record_fn
        .as_ref()
        .map(|f| quote_spanned!(ret_span=> #f(&mut __tracecraft_step, &__tracecraft_result);));
    // A function, not a closure: lints must not see user-spanned code they would flag.
    let record_async = match &record_fn {
        Some(f) => f.clone(),
        None => quote!(::tracecraft::__private::record_nothing),
    };
    let builder = quote! {
        let mut __tracecraft_b = ::tracecraft::__private::step(::tracecraft::StepType::#variant, #name);
        #set_model
        #(#set_capture)*
        #(#inputs)*
    };
    let body = if sig.asyncness.is_some() {
        quote! {
            #builder
            let __tracecraft_step = ::tracecraft::__private::start_detached(__tracecraft_b);
            let __tracecraft_result #annotation =
                ::tracecraft::__private::in_step(__tracecraft_step, async move #block, #record_async).await;
            __tracecraft_result
        }
    } else {
        quote! {
            #builder
            #[allow(unused_mut)]
            let mut __tracecraft_step = __tracecraft_b.start();
            #[allow(clippy::redundant_closure_call)]
            let __tracecraft_result #annotation = (move || #block)();
            #record
            drop(__tracecraft_step);
            __tracecraft_result
        }
    };
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    })
}

/// Whether the return type is a `Result` (`Result<T, E>`, `io::Result<T>`, `anyhow::Result<T>`).
fn is_result(ty: Option<&Type>) -> bool {
    match ty {
        Some(Type::Path(p)) if p.qself.is_none() => {
            p.path.segments.last().is_some_and(|s| s.ident == "Result")
        }
        Some(Type::Group(g)) => is_result(Some(&g.elem)),
        Some(Type::Paren(p)) => is_result(Some(&p.elem)),
        _ => false,
    }
}

/// Whether a type mentions `impl Trait` (it cannot annotate a `let`).
fn mentions_impl(ts: TokenStream2) -> bool {
    ts.into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => mentions_impl(g.stream()),
        _ => false,
    })
}
