//! `#[derive(Trace)]` for the `reap` runtime.
//!
//! The derive visits every field of a struct or of the active enum variant, so it is always an
//! exact `Trace` implementation. Generic parameters get a `Trace` bound. Attributes:
//!
//! - `#[reap(finalize)]` on the type: the type has a finalizer, its `Finalize` impl.
//! - `#[reap(sync_finalize)]` on the type: the type has a Shared-mode finalizer, its
//!   `reap::sync::Finalize` impl.
//! - `#[reap(clear)]` on the type: the type has a clear hook, its `Clear` impl.
//! - `#[reap(skip)]` on a field: the field is not visited, and must not hold handles (a handle
//!   in a skipped field is never seen by the collector: cycles through it leak). The field's type
//!   then needs no `Trace` implementation.
//!
//! A field whose type names the type itself (`Vec<Self>`, `Box<Expr>`) counts as needing
//! tracing, so a self-containing type is tracked and `needs_trace` does not recurse.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::{parse_macro_input, parse_quote, Data, DeriveInput, Fields};

/// Derives `reap::Trace` by visiting every field.
#[proc_macro_derive(Trace, attributes(reap))]
pub fn derive_trace(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn has_reap_word(attrs: &[syn::Attribute], word: &str) -> syn::Result<bool> {
    let mut found = false;
    for attr in attrs {
        if !attr.path().is_ident("reap") {
            continue;
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident(word) {
                found = true;
                Ok(())
            } else if ["finalize", "sync_finalize", "clear", "skip"]
                .iter()
                .any(|w| meta.path.is_ident(w))
            {
                Ok(())
            } else {
                Err(meta.error("unknown reap attribute: expected `finalize`, `sync_finalize`, `clear` or `skip`"))
            }
        })?;
    }
    Ok(found)
}

fn expand(input: DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    let finalize = has_reap_word(&input.attrs, "finalize")?;
    let sync_finalize = has_reap_word(&input.attrs, "sync_finalize")?;
    let clear = has_reap_word(&input.attrs, "clear")?;
    if finalize && sync_finalize {
        return Err(syn::Error::new_spanned(
            name,
            "a type is either Local (`finalize`) or Shared (`sync_finalize`), not both",
        ));
    }

    let mut generics = input.generics.clone();
    for p in generics.type_params_mut() {
        p.bounds.push(parse_quote!(::reap::Trace));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    // Field types that take part (for needs_trace), and the body of trace().
    let mut traced_types: Vec<syn::Type> = Vec::new();
    let body = match &input.data {
        Data::Struct(s) => {
            let mut stmts = Vec::new();
            for (i, f) in s.fields.iter().enumerate() {
                if has_reap_word(&f.attrs, "skip")? {
                    continue;
                }
                traced_types.push(f.ty.clone());
                let access = match &f.ident {
                    Some(id) => quote!(&self.#id),
                    None => {
                        let idx = syn::Index::from(i);
                        quote!(&self.#idx)
                    }
                };
                stmts.push(quote!(::reap::Trace::trace(#access, tracer);));
            }
            quote!(#(#stmts)*)
        }
        Data::Enum(e) => {
            let mut arms = Vec::new();
            for v in &e.variants {
                let vname = &v.ident;
                let mut binds = Vec::new();
                let mut visits = Vec::new();
                for (i, f) in v.fields.iter().enumerate() {
                    let skip = has_reap_word(&f.attrs, "skip")?;
                    let b = format_ident!("__f{}", i);
                    if !skip {
                        traced_types.push(f.ty.clone());
                        visits.push(quote!(::reap::Trace::trace(#b, tracer);));
                    }
                    binds.push((f.ident.clone(), b, skip));
                }
                let pat = match &v.fields {
                    Fields::Named(_) => {
                        let ps = binds.iter().map(|(id, b, skip)| {
                            let id = id.as_ref().unwrap();
                            if *skip {
                                quote!(#id: _)
                            } else {
                                quote!(#id: #b)
                            }
                        });
                        quote!(Self::#vname { #(#ps),* })
                    }
                    Fields::Unnamed(_) => {
                        let ps = binds
                            .iter()
                            .map(|(_, b, skip)| if *skip { quote!(_) } else { quote!(#b) });
                        quote!(Self::#vname ( #(#ps),* ))
                    }
                    Fields::Unit => quote!(Self::#vname),
                };
                arms.push(quote!(#pat => { #(#visits)* }));
            }
            if arms.is_empty() {
                quote!(match *self {})
            } else {
                quote!(match self { #(#arms)* })
            }
        }
        Data::Union(u) => {
            return Err(syn::Error::new_spanned(
                u.union_token,
                "Trace cannot be derived for unions",
            ))
        }
    };

    // A field whose type mentions the type itself (`Vec<Self>`, `Option<Box<Tree>>`) would make
    // `needs_trace` ask itself without end: count it as needing tracing (the safe answer).
    let own = name.to_string();
    let mentions_self = |ty: &syn::Type| {
        fn walk(ts: TokenStream2, own: &str) -> bool {
            ts.into_iter().any(|t| match t {
                proc_macro2::TokenTree::Ident(i) => i == own || i == "Self",
                proc_macro2::TokenTree::Group(g) => walk(g.stream(), own),
                _ => false,
            })
        }
        walk(quote!(#ty), &own)
    };
    let needs_terms: Vec<TokenStream2> = traced_types
        .iter()
        .map(|ty| {
            if mentions_self(ty) {
                quote!(true)
            } else {
                quote!(<#ty as ::reap::Trace>::needs_trace())
            }
        })
        .collect();
    let needs = quote!(false #(|| #needs_terms)*);
    let finalizer = if finalize {
        quote! {
            fn finalizer() -> ::core::option::Option<fn(&::reap::Gc<Self>)> {
                ::core::option::Option::Some(<Self as ::reap::Finalize>::finalize)
            }
            #[inline]
            fn wants_finalizer(&self) -> bool {
                <Self as ::reap::Finalize>::wants_finalizer(self)
            }
        }
    } else if sync_finalize {
        quote! {
            fn sync_finalizer() -> ::core::option::Option<fn(&::reap::sync::Gc<Self>)> {
                ::core::option::Option::Some(<Self as ::reap::sync::Finalize>::finalize)
            }
            #[inline]
            fn wants_finalizer(&self) -> bool {
                <Self as ::reap::sync::Finalize>::wants_finalizer(self)
            }
        }
    } else {
        quote!()
    };
    let clearer = if clear {
        quote! {
            fn clearer() -> ::core::option::Option<fn(&Self)> {
                ::core::option::Option::Some(<Self as ::reap::Clear>::clear)
            }
        }
    } else {
        quote!()
    };

    Ok(quote! {
        // SAFETY: the derive visits exactly the fields the value owns.
        unsafe impl #impl_generics ::reap::Trace for #name #ty_generics #where_clause {
            #[inline]
            #[allow(unused_variables)]
            fn trace(&self, tracer: &mut ::reap::Tracer<'_>) {
                #body
            }
            #[inline]
            fn needs_trace() -> bool {
                #needs
            }
            #finalizer
            #clearer
        }
    })
}
