// Fused elementwise tails of monode's vector fields, as differentiable torch ops (see _fused.py, which
// builds this file at first use). A field call is its network plus a tail of elementwise terms; on a
// CPU each ATen op costs microseconds of dispatch and autograd bookkeeping whatever the tensor size,
// so the tail is one op here: one pass forward, one pass backward.
//
// monode_fused::adam_tail (adam.py), state (h, m, v), network output f, a = act(v), r = (a + eps^2)^(-1/2):
//   dh = m r,   dm = beta1 (f - m) + nxi h,   dv = nb2 (v - f^2)          (nb2 = -beta2, nxi = -xi)
// adam_backward, cotangents (ch, cm, cv), gives what its VJP needs:
//   grad_f = beta1 cm - 2 nb2 f cv,  grad_m = r ch - beta1 cm,  grad_v = -r^3 act'(v) m ch / 2 + nb2 cv,
//   dots = (<cm, f - m>, <cv, v - f^2>, <cm, h>)  (d/dbeta1, d/dnb2, d/dnxi; grad_h = grad_f . df/dh + nxi cm)
//   act: 0 identity, 1 softplus (torch's: above 20 it is the identity), 2 sigmoid.
//
// monode_fused::momentum_tail (nesterov.py), with u = r p + dr h (the momentum the gates see):
//   out1 = sigma2(u),   out2 = sign sigma3(f) - u - xi h
//   backward: c_u = sigma2'(u) c1 - c2; grad_f = sign sigma3'(f) c2; grad_h = dr c_u - xi c2;
//             grad_p = r c_u; grad_xi = -<c2, h>.
//   NesterovNODE: p = m, r = 1, dr = 0; the official field: p = b, h = a, r = r(t), dr = r'(t).
//   gates: 0 identity, 1 tanh, 2 sigmoid, 3 hardtanh(lo, hi).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mul.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <cmath>

#ifdef MONODE_LIBMVEC  // glibc's vector math: the loops below call 4- and 8-wide exp, log1p and tanh
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float);
__attribute__((simd("notinbranch"))) float log1pf(float);
__attribute__((simd("notinbranch"))) float tanhf(float);
__attribute__((simd("notinbranch"))) double exp(double);
__attribute__((simd("notinbranch"))) double log1p(double);
__attribute__((simd("notinbranch"))) double tanh(double);
}
#endif

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using at::Tensor;

inline float vexp(float x) { return ::expf(x); }
inline double vexp(double x) { return ::exp(x); }
inline float vlog1p(float x) { return ::log1pf(x); }
inline double vlog1p(double x) { return ::log1p(x); }
inline float vtanh(float x) { return ::tanhf(x); }
inline double vtanh(double x) { return ::tanh(x); }

// a = act(v), da = act'(v); branch-free so the loops vectorise; NaN propagates.
template <typename T, int KIND>
inline void activation(T x, T& a, T& da) {
    if (KIND == 1) {
        T z = vexp(x > T(20) ? T(20) : x);
        a = x > T(20) ? x : vlog1p(z);
        da = x > T(20) ? T(1) : z / (T(1) + z);
    } else if (KIND == 2) {
        a = T(1) / (T(1) + vexp(-x));
        da = a * (T(1) - a);
    } else {
        a = x;
        da = T(1);
    }
}

// y = gate(x) and gate'(x) for the momentum gates.
template <typename T, int GATE>
inline T gate(T x, T lo, T hi) {
    if (GATE == 1) return vtanh(x);
    if (GATE == 2) return T(1) / (T(1) + vexp(-x));
    if (GATE == 3) return x < lo ? lo : (x > hi ? hi : x);
    return x;
}
template <typename T, int GATE>
inline T gate_slope(T x, T y, T lo, T hi) {
    if (GATE == 1) return T(1) - y * y;
    if (GATE == 2) return y * (T(1) - y);
    if (GATE == 3) return (x > lo && x < hi) ? T(1) : T(0);
    return T(1);
}

template <typename F>
void with_kind(int64_t kind, F&& f) {  // f(std::integral_constant<int, K>) for K = kind
    switch (kind) {
        case 1: f(std::integral_constant<int, 1>()); break;
        case 2: f(std::integral_constant<int, 2>()); break;
        case 3: f(std::integral_constant<int, 3>()); break;
        default: f(std::integral_constant<int, 0>()); break;
    }
}

template <typename T>
T scalar(const Tensor& c) { return c.defined() ? c.item<T>() : T(0); }

constexpr int64_t kGrain = 32768;  // elements per task of at::parallel_for (smaller tensors: one thread)

// Whether autograd records: skip the Function (its node and saved state) when it would not.
bool needs_grad(std::initializer_list<Tensor> tensors, const std::optional<Tensor>& extra) {
    if (!at::GradMode::is_enabled()) return false;
    for (const auto& t : tensors)
        if (t.requires_grad()) return true;
    return extra && extra->requires_grad();
}

// The loops read f.numel() elements of every operand: same shape, dtype and device as f, dense.
Tensor like(const Tensor& x, const Tensor& f, const char* name) {
    TORCH_CHECK(x.sizes() == f.sizes() && x.scalar_type() == f.scalar_type() && x.device() == f.device(),
                "monode_fused: ", name, " must have f's shape, dtype and device; got ", x.sizes(), " ",
                x.scalar_type(), " vs ", f.sizes(), " ", f.scalar_type());
    return x.contiguous();
}

// ---------------------------------------------------------------- AdamNODE

std::tuple<Tensor, Tensor, Tensor> adam_forward_impl(const Tensor& f_, const Tensor& h_, const Tensor& m_,
                                                     const Tensor& v_, const Tensor& beta1, const Tensor& nb2,
                                                     const std::optional<Tensor>& nxi, int64_t kind, double eps2) {
    TORCH_CHECK(f_.device().is_cpu(), "monode_fused: CPU tensors only");
    Tensor f = f_.contiguous(), h = like(h_, f, "h"), m = like(m_, f, "m"), v = like(v_, f, "v");
    Tensor dh = at::empty_like(f), dm = at::empty_like(f), dv = at::empty_like(f);
    const int64_t n = f.numel();
    AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "adam_forward", [&] {
        using T = scalar_t;
        const T b1 = scalar<T>(beta1), b2 = scalar<T>(nb2), xi = nxi ? scalar<T>(*nxi) : T(0), e2 = T(eps2);
        const T* __restrict__ pf = f.data_ptr<T>();
        const T* __restrict__ ph = h.data_ptr<T>();
        const T* __restrict__ pm = m.data_ptr<T>();
        const T* __restrict__ pv = v.data_ptr<T>();
        T* __restrict__ odh = dh.data_ptr<T>();
        T* __restrict__ odm = dm.data_ptr<T>();
        T* __restrict__ odv = dv.data_ptr<T>();
        with_kind(kind, [&](auto K) {
            at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
            _Pragma("omp simd")
            for (int64_t i = begin; i < end; ++i) {
                T x = pv[i], fi = pf[i], mi = pm[i], a, da;
                activation<T, decltype(K)::value>(x, a, da);
                odh[i] = mi / std::sqrt(a + e2);
                odm[i] = (fi - mi) * b1 + ph[i] * xi;
                odv[i] = (x - fi * fi) * b2;
            }
            });
        });
    });
    return {dh, dm, dv};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> adam_backward(const Tensor& f_, const Tensor& h_, const Tensor& m_,
                                                         const Tensor& v_, const Tensor& ch_, const Tensor& cm_,
                                                         const Tensor& cv_, const Tensor& beta1, const Tensor& nb2,
                                                         int64_t kind, double eps2) {
    TORCH_CHECK(f_.device().is_cpu(), "monode_fused: CPU tensors only");
    Tensor f = f_.contiguous(), h = like(h_, f, "h"), m = like(m_, f, "m"), v = like(v_, f, "v");
    Tensor ch = like(ch_, f, "ch"), cm = like(cm_, f, "cm"), cv = like(cv_, f, "cv");
    Tensor gf = at::empty_like(f), gm = at::empty_like(f), gv = at::empty_like(f);
    Tensor dots = at::empty({3}, f.options().dtype(at::kDouble));
    const int64_t n = f.numel();
    AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "adam_backward", [&] {
        using T = scalar_t;
        const T b1 = scalar<T>(beta1), b2 = scalar<T>(nb2), e2 = T(eps2);
        const T* __restrict__ pf = f.data_ptr<T>();
        const T* __restrict__ ph = h.data_ptr<T>();
        const T* __restrict__ pm = m.data_ptr<T>();
        const T* __restrict__ pv = v.data_ptr<T>();
        const T* __restrict__ pch = ch.data_ptr<T>();
        const T* __restrict__ pcm = cm.data_ptr<T>();
        const T* __restrict__ pcv = cv.data_ptr<T>();
        T* __restrict__ ogf = gf.data_ptr<T>();
        T* __restrict__ ogm = gm.data_ptr<T>();
        T* __restrict__ ogv = gv.data_ptr<T>();
        double s1 = 0, s2 = 0, s3 = 0;  // one pass, in order: the reduction is serial
        with_kind(kind, [&](auto K) {
            _Pragma("omp simd reduction(+ : s1, s2, s3)")
            for (int64_t i = 0; i < n; ++i) {
                T x = pv[i], fi = pf[i], mi = pm[i], chi = pch[i], cmi = pcm[i], cvi = pcv[i], a, da;
                activation<T, decltype(K)::value>(x, a, da);
                T r = T(1) / std::sqrt(a + e2);
                T v_minus_f2 = x - fi * fi;
                ogf[i] = cmi * b1 - T(2) * fi * (cvi * b2);
                ogm[i] = chi * r - cmi * b1;
                ogv[i] = T(-0.5) * (chi * r * mi) * (r * r) * da + cvi * b2;
                s1 += double(cmi) * double(fi - mi);
                s2 += double(cvi) * double(v_minus_f2);
                s3 += double(cmi) * double(ph[i]);
            }
        });
        double* d = dots.data_ptr<double>();
        d[0] = s1, d[1] = s2, d[2] = s3;
    });
    return {gf, gm, gv, dots};
}

struct AdamTail : public torch::autograd::Function<AdamTail> {
    static variable_list forward(AutogradContext* ctx, const Tensor& f, const Tensor& h, const Tensor& m,
                                 const Tensor& v, const Tensor& beta1, const Tensor& nb2,
                                 const std::optional<Tensor>& nxi, int64_t kind, double eps2) {
        ctx->save_for_backward({f, h, m, v, beta1, nb2, nxi ? *nxi : Tensor()});
        ctx->saved_data["kind"] = kind;
        ctx->saved_data["eps2"] = eps2;
        auto [dh, dm, dv] = adam_forward_impl(f, h, m, v, beta1, nb2, nxi, kind, eps2);
        return {dh, dm, dv};
    }
    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        auto s = ctx->get_saved_variables();
        const Tensor &f = s[0], &h = s[1], &m = s[2], &v = s[3], &beta1 = s[4], &nb2 = s[5], &nxi = s[6];
        auto [gf, gm, gv, dots] = adam_backward(f, h, m, v, grads[0], grads[1], grads[2], beta1, nb2, ctx->saved_data["kind"].toInt(),
                                                ctx->saved_data["eps2"].toDouble());
        Tensor d = dots.to(f.scalar_type());
        Tensor gh = nxi.defined() ? at::mul(grads[1], nxi) : Tensor();
        return {gf, gh, gm, gv, d[0].to(beta1.scalar_type()), d[1].to(nb2.scalar_type()),
                nxi.defined() ? d[2].to(nxi.scalar_type()) : Tensor(), Tensor(), Tensor()};
    }
};

std::tuple<Tensor, Tensor, Tensor> adam_tail(const Tensor& f, const Tensor& h, const Tensor& m, const Tensor& v,
                                             const Tensor& beta1, const Tensor& nb2, const std::optional<Tensor>& nxi,
                                             int64_t kind, double eps2) {
    if (!needs_grad({f, h, m, v, beta1, nb2}, nxi)) return adam_forward_impl(f, h, m, v, beta1, nb2, nxi, kind, eps2);
    auto out = AdamTail::apply(f, h, m, v, beta1, nb2, nxi, kind, eps2);
    return {out[0], out[1], out[2]};
}

// ---------------------------------------------------------------- NesterovNODE

struct Gates {
    int64_t gate, f_gate;
    double lo, hi, f_lo, f_hi;
};

template <typename F>
void with_gates(const Gates& g, F&& f) {
    with_kind(g.gate, [&](auto G) { with_kind(g.f_gate, [&](auto FG) { f(G, FG); }); });
}

std::tuple<Tensor, Tensor> momentum_forward_impl(const Tensor& f_, const Tensor& h_, const Tensor& p_, const Tensor& xi,
                                                 double r, double dr, int64_t sign, const Gates& g) {
    TORCH_CHECK(f_.device().is_cpu(), "monode_fused: CPU tensors only");
    Tensor f = f_.contiguous(), h = like(h_, f, "h"), p = like(p_, f, "p");
    Tensor o1 = at::empty_like(f), o2 = at::empty_like(f);
    const int64_t n = f.numel();
    AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "momentum_forward", [&] {
        using T = scalar_t;
        const T x = scalar<T>(xi), tr = T(r), tdr = T(dr), s = T(sign);
        const T lo = T(g.lo), hi = T(g.hi), flo = T(g.f_lo), fhi = T(g.f_hi);
        const T* __restrict__ pf = f.data_ptr<T>();
        const T* __restrict__ ph = h.data_ptr<T>();
        const T* __restrict__ pp = p.data_ptr<T>();
        T* __restrict__ q1 = o1.data_ptr<T>();
        T* __restrict__ q2 = o2.data_ptr<T>();
        with_gates(g, [&](auto G, auto FG) {
            at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
            _Pragma("omp simd")
            for (int64_t i = begin; i < end; ++i) {
                T hi_ = ph[i], u = pp[i] * tr + hi_ * tdr;
                q1[i] = gate<T, decltype(G)::value>(u, lo, hi);
                q2[i] = s * gate<T, decltype(FG)::value>(pf[i], flo, fhi) - u - x * hi_;
            }
            });
        });
    });
    return {o1, o2};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> momentum_backward(const Tensor& f_, const Tensor& h_, const Tensor& p_,
                                                             const Tensor& xi, const Tensor& c1_, const Tensor& c2_,
                                                             double r, double dr, int64_t sign, const Gates& g) {
    Tensor f = f_.contiguous(), h = like(h_, f, "h"), p = like(p_, f, "p");
    Tensor c1 = like(c1_, f, "c1"), c2 = like(c2_, f, "c2");
    Tensor gf = at::empty_like(f), gh = at::empty_like(f), gp = at::empty_like(f);
    Tensor dot = at::empty({}, f.options().dtype(at::kDouble));
    const int64_t n = f.numel();
    AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "momentum_backward", [&] {
        using T = scalar_t;
        const T x = scalar<T>(xi), tr = T(r), tdr = T(dr), s = T(sign);
        const T lo = T(g.lo), hi = T(g.hi), flo = T(g.f_lo), fhi = T(g.f_hi);
        const T* __restrict__ pf = f.data_ptr<T>();
        const T* __restrict__ ph = h.data_ptr<T>();
        const T* __restrict__ pp = p.data_ptr<T>();
        const T* __restrict__ pc1 = c1.data_ptr<T>();
        const T* __restrict__ pc2 = c2.data_ptr<T>();
        T* __restrict__ ogf = gf.data_ptr<T>();
        T* __restrict__ ogh = gh.data_ptr<T>();
        T* __restrict__ ogp = gp.data_ptr<T>();
        double acc = 0;  // one pass, in order: the reduction is serial
        with_gates(g, [&](auto G, auto FG) {
            _Pragma("omp simd reduction(+ : acc)")
            for (int64_t i = 0; i < n; ++i) {
                T hi_ = ph[i], u = pp[i] * tr + hi_ * tdr, fi = pf[i], c2i = pc2[i];
                T gu = gate<T, decltype(G)::value>(u, lo, hi);
                T gfv = gate<T, decltype(FG)::value>(fi, flo, fhi);
                T cu = gate_slope<T, decltype(G)::value>(u, gu, lo, hi) * pc1[i] - c2i;
                ogf[i] = s * gate_slope<T, decltype(FG)::value>(fi, gfv, flo, fhi) * c2i;
                ogh[i] = tdr * cu - x * c2i;
                ogp[i] = tr * cu;
                acc += double(c2i) * double(hi_);
            }
        });
        *dot.data_ptr<double>() = -acc;
    });
    return {gf, gh, gp, dot};
}

struct MomentumTail : public torch::autograd::Function<MomentumTail> {
    static variable_list forward(AutogradContext* ctx, const Tensor& f, const Tensor& h, const Tensor& p,
                                 const std::optional<Tensor>& xi_, double r, double dr, int64_t sign, Gates g) {
        Tensor xi = xi_ ? *xi_ : Tensor();
        ctx->save_for_backward({f, h, p, xi});
        ctx->saved_data["r"] = r;
        ctx->saved_data["dr"] = dr;
        ctx->saved_data["sign"] = sign;
        ctx->saved_data["gates"] = std::vector<double>{double(g.gate), double(g.f_gate), g.lo, g.hi, g.f_lo, g.f_hi};
        auto [o1, o2] = momentum_forward_impl(f, h, p, xi, r, dr, sign, g);
        return {o1, o2};
    }
    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        auto s = ctx->get_saved_variables();
        auto gv = ctx->saved_data["gates"].toDoubleVector();
        Gates g{int64_t(gv[0]), int64_t(gv[1]), gv[2], gv[3], gv[4], gv[5]};
        auto [gf, gh, gp, dot] = momentum_backward(s[0], s[1], s[2], s[3], grads[0], grads[1], ctx->saved_data["r"].toDouble(),
                                                   ctx->saved_data["dr"].toDouble(), ctx->saved_data["sign"].toInt(), g);
        const Tensor& xi = s[3];
        return {gf, gh, gp, xi.defined() ? dot.to(xi.scalar_type()) : Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
    }
};

std::tuple<Tensor, Tensor> momentum_tail(const Tensor& f, const Tensor& h, const Tensor& p,
                                         const std::optional<Tensor>& xi, double r, double dr, int64_t sign,
                                         int64_t gate, double lo, double hi, int64_t f_gate, double f_lo, double f_hi) {
    Gates g{gate, f_gate, lo, hi, f_lo, f_hi};
    if (!needs_grad({f, h, p}, xi)) return momentum_forward_impl(f, h, p, xi ? *xi : Tensor(), r, dr, sign, g);
    auto out = MomentumTail::apply(f, h, p, xi, r, dr, sign, g);
    return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY(monode_fused, m) {
    m.def("adam_tail(Tensor f, Tensor h, Tensor m, Tensor v, Tensor beta1, Tensor nb2, Tensor? nxi, int kind, "
          "float eps2) -> (Tensor, Tensor, Tensor)");
    m.def("adam_backward(Tensor f, Tensor h, Tensor m, Tensor v, Tensor ch, Tensor cm, Tensor cv, Tensor beta1, "
          "Tensor nb2, int kind, float eps2) -> (Tensor, Tensor, Tensor, Tensor)");
    m.def("momentum_tail(Tensor f, Tensor h, Tensor p, Tensor? xi, float r, float dr, int sign, int gate, float lo, "
          "float hi, int f_gate, float f_lo, float f_hi) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(monode_fused, CompositeImplicitAutograd, m) {
    m.impl("adam_tail", &adam_tail);
    m.impl("adam_backward", &adam_backward);
    m.impl("momentum_tail", &momentum_tail);
}
