/*
 * LL-KNN's estimate in one native call: the exact k nearest samples of a joint
 * configuration, then the affine least-squares fit x ~ J q + c on them.
 *
 * Plain C99 with no Python headers: built by setup.py as an optional
 * extension and called through ctypes (uvs_core/estimators/_native.py). When
 * it is absent, LocalLinearKNN uses pykdtree's KD-tree and numpy instead,
 * with the same result.
 *
 * Why not a library KD-tree: for k = 128 in 7 dimensions over 100,000 samples,
 * a KD-tree query spends its time walking ~800-1,400 tree nodes scattered in
 * ~6 MB, one cache miss after another. Here the samples are grouped twice:
 * blocks of at most `block_size` samples, split into leaves of at most
 * `leaf_size` samples (both sliding-midpoint KD splits, so each group is
 * spatially compact), each with its tight bounding box. A query computes the
 * lower bound of its distance to every block box in one linear pass, visits
 * the blocks in order of that bound, and inside a block scans only the leaves
 * whose box is nearer than the current k-th neighbour. Every sample that
 * could be among the k nearest is compared, so the result is exact (with
 * `eps` > 0, a leaf or block is skipped unless it could hold a sample nearer
 * than k-th distance / (1 + eps), as scipy's cKDTree does).
 *
 * Layout (all arrays owned by the caller, rows in the index's order):
 *   pts        n x d   float64  joint configurations
 *   xs         n x m   float64  task positions
 *   leaf_start nleaves + 1      first sample of each leaf
 *   leaf_box   2d x nleaves float32  per block, a tile of its c leaves: lo of
 *                                  dimension j in row j, hi in row d + j, each row
 *                                  c long, the tile at 2d x (block's first leaf);
 *                                  rounded outward, so a bound stays a bound
 *   block_leaf nblocks + 1      first leaf of each block
 *   block_box  2d x nblocks float32  as leaf_box
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LLKNN_MAX_D 16
#define LLKNN_MAX_M 32

typedef struct {
    /* the index */
    int32_t n, d, m, nleaves, nblocks, k;
    double prune;   /* (1 + eps)^2: a box is visited when bound * prune < k-th distance */
    double ridge;   /* relative ridge on the Gram matrix diagonal */
    const double *pts;
    const double *xs;
    const int32_t *leaf_start;
    const float *leaf_box;
    const int32_t *block_leaf;
    const float *block_box;
    /* per-query scratch and results */
    double *q;          /* d: the query */
    double *heap_d;     /* k: squared distances, a max-heap */
    int32_t *heap_i;    /* k: their rows */
    double *block_lb;   /* nblocks */
    double *leaf_lb;    /* the most leaves in a block */
    int32_t *order;     /* nblocks */
    double *gram;       /* d x d: centred dq^T dq, ridged */
    double *cross;      /* d x m: centred dq^T dx */
    double *jac;        /* m x d */
    int32_t found;      /* neighbours found by the last query */
} LLKNNIndex;

/* ------------------------------------------------------------------ build */

typedef struct {
    double *pts;
    double *xs;
    int64_t *perm;
    int d, m;
} Rows;

static void swap_rows(Rows *r, int32_t i, int32_t j) {
    double tmp[LLKNN_MAX_M];
    int d = r->d, m = r->m;
    memcpy(tmp, r->pts + (size_t)i * d, d * sizeof(double));
    memcpy(r->pts + (size_t)i * d, r->pts + (size_t)j * d, d * sizeof(double));
    memcpy(r->pts + (size_t)j * d, tmp, d * sizeof(double));
    memcpy(tmp, r->xs + (size_t)i * m, m * sizeof(double));
    memcpy(r->xs + (size_t)i * m, r->xs + (size_t)j * m, m * sizeof(double));
    memcpy(r->xs + (size_t)j * m, tmp, m * sizeof(double));
    int64_t t = r->perm[i];
    r->perm[i] = r->perm[j];
    r->perm[j] = t;
}

/* Sliding-midpoint split of [start, end) until groups hold <= size rows;
   writes each group's first row to starts[*count] in order. */
static void split(Rows *r, int32_t start, int32_t end, int32_t size, int32_t *starts,
                  int32_t *count) {
    int d = r->d;
    if (end - start <= size) {
        starts[(*count)++] = start;
        return;
    }
    double lo[LLKNN_MAX_D], hi[LLKNN_MAX_D];
    for (int j = 0; j < d; j++) lo[j] = hi[j] = r->pts[(size_t)start * d + j];
    for (int32_t i = start + 1; i < end; i++) {
        const double *p = r->pts + (size_t)i * d;
        for (int j = 0; j < d; j++) {
            if (p[j] < lo[j]) lo[j] = p[j];
            if (p[j] > hi[j]) hi[j] = p[j];
        }
    }
    int dim = 0;
    for (int j = 1; j < d; j++)
        if (hi[j] - lo[j] > hi[dim] - lo[dim]) dim = j;
    if (!(hi[dim] - lo[dim] > 0.0)) {  /* all rows equal: one group */
        starts[(*count)++] = start;
        return;
    }
    double cut = 0.5 * (lo[dim] + hi[dim]);
    int32_t i = start, j = end - 1;
    while (i <= j) {
        if (r->pts[(size_t)i * d + dim] < cut) i++;
        else swap_rows(r, i, j--);
    }
    int32_t mid = i;
    if (mid == start || mid == end) {  /* slide the cut to the nearest row */
        int32_t best = start;
        for (int32_t t = start + 1; t < end; t++) {
            double v = r->pts[(size_t)t * d + dim], b = r->pts[(size_t)best * d + dim];
            if (mid == start ? v < b : v > b) best = t;
        }
        if (mid == start) { swap_rows(r, start, best); mid = start + 1; }
        else { swap_rows(r, end - 1, best); mid = end - 1; }
    }
    split(r, start, mid, size, starts, count);
    split(r, mid, end, size, starts, count);
}

static void bound_box(const double *pts, int d, int32_t start, int32_t end, float *box) {
    double lo[LLKNN_MAX_D], hi[LLKNN_MAX_D];
    for (int j = 0; j < d; j++) { lo[j] = INFINITY; hi[j] = -INFINITY; }
    for (int32_t i = start; i < end; i++)
        for (int j = 0; j < d; j++) {
            double v = pts[(size_t)i * d + j];
            if (v < lo[j]) lo[j] = v;
            if (v > hi[j]) hi[j] = v;
        }
    for (int j = 0; j < d; j++) {  /* float32, rounded outward: still a bound */
        float l = (float)lo[j], h = (float)hi[j];
        if ((double)l > lo[j]) l = nextafterf(l, -INFINITY);
        if ((double)h < hi[j]) h = nextafterf(h, INFINITY);
        box[j] = l;
        box[d + j] = h;
    }
}

/* Reorders pts (n x d), xs (n x m) and perm (the original row of each row) in
   place and fills the groups. leaf_start and block_leaf need room for n + 1
   entries, leaf_box for 2d x n (the caller keeps the first 2d x nleaves),
   block_box for 2d x n (row j: column b is block b's bound j; the caller
   keeps the first nblocks columns). Returns 0, or -1 for
   sizes out of range. Counts in *nleaves, *nblocks. */
int llknn_build(double *pts, double *xs, int64_t *perm, int32_t n, int32_t d, int32_t m,
                int32_t block_size, int32_t leaf_size, int32_t *leaf_start, float *leaf_box,
                int32_t *block_leaf, float *block_box, int32_t *nleaves, int32_t *nblocks) {
    if (n < 1 || d < 1 || d > LLKNN_MAX_D || m < 1 || m > LLKNN_MAX_M || leaf_size < 1 ||
        block_size < leaf_size)
        return -1;
    for (int32_t i = 0; i < n; i++) perm[i] = i;
    Rows r = {pts, xs, perm, d, m};
    int32_t *block_start = (int32_t *)malloc(sizeof(int32_t) * ((size_t)n + 1));
    if (!block_start) return -1;
    int32_t nb = 0, nl = 0;
    split(&r, 0, n, block_size, block_start, &nb);
    block_start[nb] = n;
    for (int32_t b = 0; b < nb; b++) {
        block_leaf[b] = nl;
        split(&r, block_start[b], block_start[b + 1], leaf_size, leaf_start, &nl);
        float box[2 * LLKNN_MAX_D];
        bound_box(pts, d, block_start[b], block_start[b + 1], box);
        for (int j = 0; j < 2 * d; j++) block_box[(size_t)j * n + b] = box[j];
    }
    block_leaf[nb] = nl;
    leaf_start[nl] = n;
    for (int32_t b = 0; b < nb; b++) {
        int32_t l0 = block_leaf[b], count = block_leaf[b + 1] - l0;
        float *tile = leaf_box + (size_t)2 * d * l0;
        for (int32_t l = l0; l < l0 + count; l++) {
            float box[2 * LLKNN_MAX_D];
            bound_box(pts, d, leaf_start[l], leaf_start[l + 1], box);
            for (int j = 0; j < 2 * d; j++) tile[(size_t)j * count + (l - l0)] = box[j];
        }
    }
    free(block_start);
    *nleaves = nl;
    *nblocks = nb;
    return 0;
}

/* ----------------------------------------------------------------- search */

static inline void heap_add(LLKNNIndex *ix, double dist, int32_t row) {
    double *hd = ix->heap_d;
    int32_t *hi = ix->heap_i;
    int32_t c;
    if (ix->found < ix->k) {  /* sift up */
        c = ix->found++;
        while (c > 0) {
            int32_t p = (c - 1) >> 1;
            if (hd[p] >= dist) break;
            hd[c] = hd[p];
            hi[c] = hi[p];
            c = p;
        }
    } else {  /* replace the farthest, sift down */
        int32_t size = ix->found;
        c = 0;
        for (;;) {
            int32_t l = 2 * c + 1, g;
            if (l >= size) break;
            g = (l + 1 < size && hd[l + 1] > hd[l]) ? l + 1 : l;
            if (hd[g] <= dist) break;
            hd[c] = hd[g];
            hi[c] = hi[g];
            c = g;
        }
    }
    hd[c] = dist;
    hi[c] = row;
}

static inline double kth(const LLKNNIndex *ix) {
    return ix->found < ix->k ? INFINITY : ix->heap_d[0];
}

static void scan_block(LLKNNIndex *ix, int32_t b) {
    const int d = ix->d;
    const int32_t l0 = ix->block_leaf[b], count = ix->block_leaf[b + 1] - l0;
    const double *q = ix->q;
    double *lb = ix->leaf_lb;
    /* lower bounds for the block's leaves, one dimension at a time (vectorised) */
    for (int32_t t = 0; t < count; t++) lb[t] = 0.0;
    const float *tile = ix->leaf_box + (size_t)2 * d * l0;
    for (int j = 0; j < d; j++) {
        const float *lo = tile + (size_t)j * count;
        const float *hi = tile + (size_t)(d + j) * count;
        const double v = q[j];
        for (int32_t t = 0; t < count; t++) {
            double below = (double)lo[t] - v, above = v - (double)hi[t];
            below = below > 0.0 ? below : 0.0;
            above = above > 0.0 ? above : 0.0;
            lb[t] += (below + above) * (below + above);
        }
    }
    double limit = kth(ix);
    for (int32_t t = 0; t < count; t++) {
        if (lb[t] * ix->prune >= limit) continue;
        for (int32_t i = ix->leaf_start[l0 + t]; i < ix->leaf_start[l0 + t + 1]; i++) {
            const double *p = ix->pts + (size_t)i * d;
            double acc = 0.0;
            for (int j = 0; j < d; j++) {
                double e = p[j] - q[j];
                acc += e * e;
            }
            if (acc < limit) {
                heap_add(ix, acc, i);
                limit = kth(ix);
            }
        }
    }
}

/* Lower bounds of the squared distance from q to every block box, one
   dimension at a time over all blocks (a loop the compiler vectorises). */
static void block_bounds(const LLKNNIndex *ix) {
    const int32_t nb = ix->nblocks;
    const int d = ix->d;
    double *lb = ix->block_lb;
    for (int32_t b = 0; b < nb; b++) lb[b] = 0.0;
    for (int j = 0; j < d; j++) {
        const float *lo = ix->block_box + (size_t)j * nb;
        const float *hi = ix->block_box + (size_t)(d + j) * nb;
        const double v = ix->q[j];
        for (int32_t b = 0; b < nb; b++) {
            double below = (double)lo[b] - v, above = v - (double)hi[b];
            below = below > 0.0 ? below : 0.0;
            above = above > 0.0 ? above : 0.0;
            lb[b] += (below + above) * (below + above);
        }
    }
}

/* Asks the cache for block b's leaf tile and first samples (a hint only). */
static inline void prefetch_block(const LLKNNIndex *ix, int32_t b) {
#if defined(__GNUC__)
    const int d = ix->d;
    const int32_t l0 = ix->block_leaf[b], count = ix->block_leaf[b + 1] - l0;
    const char *tile = (const char *)(ix->leaf_box + (size_t)2 * d * l0);
    size_t bytes = sizeof(float) * 2 * d * (size_t)count;
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(tile + o);
#else
    (void)ix;
    (void)b;
#endif
}

/* Min-heap of block indices on lb: sift down from position c. */
static void sift_down(int32_t *h, int32_t size, int32_t c, const double *lb) {
    int32_t v = h[c];
    double key = lb[v];
    for (;;) {
        int32_t l = 2 * c + 1, s;
        if (l >= size) break;
        s = (l + 1 < size && lb[h[l + 1]] < lb[h[l]]) ? l + 1 : l;
        if (lb[h[s]] >= key) break;
        h[c] = h[s];
        c = s;
    }
    h[c] = v;
}

/* The k nearest rows of ix->q into heap_i (ix->found of them, unordered). */
void llknn_query(LLKNNIndex *ix) {
    const int32_t nb = ix->nblocks;
    double *lb = ix->block_lb;
    int32_t *h = ix->order;
    ix->found = 0;
    block_bounds(ix);
    /* Nearest blocks first until k samples are in: then the k-th distance is
       small and few blocks remain within reach. */
    while (ix->found < ix->k) {
        int32_t best = -1;
        for (int32_t b = 0; b < nb; b++)
            if (lb[b] < INFINITY && (best < 0 || lb[b] < lb[best])) best = b;
        if (best < 0) return;  /* every block scanned: fewer than k samples */
        scan_block(ix, best);
        lb[best] = INFINITY;
    }
    /* Then every block that could hold a nearer sample, nearest first (a
       min-heap), until the nearest left is beyond the k-th distance. */
    int32_t size = 0;
    double limit = kth(ix);
    for (int32_t b = 0; b < nb; b++)
        if (lb[b] * ix->prune < limit) h[size++] = b;
    for (int32_t c = size / 2 - 1; c >= 0; c--) sift_down(h, size, c, lb);
    while (size > 0) {
        int32_t b = h[0];
        if (lb[b] * ix->prune >= kth(ix)) break;
        h[0] = h[--size];
        sift_down(h, size, 0, lb);
        if (size > 0) prefetch_block(ix, h[0]);  /* the likely next one, while this one scans */
        scan_block(ix, b);
    }
}

/* J (m x d, row-major) of the affine least-squares fit on the found rows:
   centred Gram matrix, ridge relative to its trace, Cholesky. Returns 0, or 1
   when Cholesky fails (gram and cross are left for the caller to solve). */
static int local_fit(LLKNNIndex *ix) {
    const int d = ix->d, m = ix->m;
    const int32_t count = ix->found;
    double mq[LLKNN_MAX_D] = {0}, mx[LLKNN_MAX_M] = {0};
    double *gram = ix->gram, *cross = ix->cross;
    for (int32_t r = 0; r < count; r++) {
        const double *p = ix->pts + (size_t)ix->heap_i[r] * d;
        const double *x = ix->xs + (size_t)ix->heap_i[r] * m;
        for (int j = 0; j < d; j++) mq[j] += p[j];
        for (int j = 0; j < m; j++) mx[j] += x[j];
    }
    for (int j = 0; j < d; j++) mq[j] /= count;
    for (int j = 0; j < m; j++) mx[j] /= count;
    memset(gram, 0, sizeof(double) * d * d);
    memset(cross, 0, sizeof(double) * d * m);
    for (int32_t r = 0; r < count; r++) {
        const double *p = ix->pts + (size_t)ix->heap_i[r] * d;
        const double *x = ix->xs + (size_t)ix->heap_i[r] * m;
        double dq[LLKNN_MAX_D], dx[LLKNN_MAX_M];
        for (int j = 0; j < d; j++) dq[j] = p[j] - mq[j];
        for (int j = 0; j < m; j++) dx[j] = x[j] - mx[j];
        for (int a = 0; a < d; a++) {
            for (int b = a; b < d; b++) gram[a * d + b] += dq[a] * dq[b];
            for (int c = 0; c < m; c++) cross[a * m + c] += dq[a] * dx[c];
        }
    }
    double trace = 0.0;
    for (int a = 0; a < d; a++) {
        for (int b = 0; b < a; b++) gram[a * d + b] = gram[b * d + a];
        trace += gram[a * d + a];
    }
    double add = ix->ridge * trace / d + 1e-300;
    for (int a = 0; a < d; a++) gram[a * d + a] += add;
    double L[LLKNN_MAX_D * LLKNN_MAX_D];
    for (int a = 0; a < d; a++) {
        for (int b = 0; b <= a; b++) {
            double s = gram[a * d + b];
            for (int c = 0; c < b; c++) s -= L[a * d + c] * L[b * d + c];
            if (a == b) {
                if (!(s > 0.0) || !isfinite(s)) return 1;
                L[a * d + a] = sqrt(s);
            } else {
                L[a * d + b] = s / L[b * d + b];
            }
        }
    }
    for (int c = 0; c < m; c++) {  /* gram y = cross[:, c]; row c of J is y */
        double y[LLKNN_MAX_D];
        for (int a = 0; a < d; a++) {
            double s = cross[a * m + c];
            for (int b = 0; b < a; b++) s -= L[a * d + b] * y[b];
            y[a] = s / L[a * d + a];
        }
        for (int a = d - 1; a >= 0; a--) {
            double s = y[a];
            for (int b = a + 1; b < d; b++) s -= L[b * d + a] * y[b];
            y[a] = s / L[a * d + a];
        }
        for (int a = 0; a < d; a++) ix->jac[c * d + a] = y[a];
    }
    return 0;
}

/* One estimate at ix->q into ix->jac. Returns local_fit's status. */
int llknn_estimate(LLKNNIndex *ix) {
    llknn_query(ix);
    return local_fit(ix);
}

/* Estimates at qs (count x d) into out (count x m x d); status[i] as
   llknn_estimate's. ix->q is used as scratch. */
void llknn_estimate_batch(LLKNNIndex *ix, const double *qs, int32_t count, double *out,
                          int32_t *status) {
    const int d = ix->d, m = ix->m;
    double *saved = ix->jac;
    for (int32_t i = 0; i < count; i++) {
        memcpy(ix->q, qs + (size_t)i * d, sizeof(double) * d);
        ix->jac = out + (size_t)i * m * d;
        status[i] = llknn_estimate(ix);
    }
    ix->jac = saved;
}

/* ------------------------------------------------------- condition number */

/* 2-norm condition number sigma_max / sigma_min of a finite r x c matrix
   (row-major, r, c <= 64; the estimator service answers it with every J),
   by one-sided Jacobi SVD: the columns of A, or of A^T when r < c, are
   rotated pairwise until orthogonal; the singular values are then their
   norms, to high relative accuracy. Returns +inf when singular, -1 when it
   does not converge within 60 sweeps or the sizes are out of range (the
   caller then uses LAPACK). */
double uvs_condition_number(const double *a, int32_t r, int32_t c) {
    enum { MAX = 64 };
    double b[MAX * MAX];
    int32_t rows = r >= c ? r : c, cols = r >= c ? c : r;
    if (r < 1 || c < 1 || rows > MAX) return -1.0;
    for (int32_t j = 0; j < cols; j++)  /* b: column j at b + j * rows */
        for (int32_t i = 0; i < rows; i++)
            b[j * rows + i] = r >= c ? a[i * c + j] : a[j * c + i];
    int converged = 0;
    for (int sweep = 0; sweep < 60 && !converged; sweep++) {
        converged = 1;
        for (int32_t p = 0; p < cols - 1; p++) {
            for (int32_t q = p + 1; q < cols; q++) {
                double *bp = b + p * rows, *bq = b + q * rows;
                double alpha = 0.0, beta = 0.0, gamma = 0.0;
                for (int32_t i = 0; i < rows; i++) {
                    alpha += bp[i] * bp[i];
                    beta += bq[i] * bq[i];
                    gamma += bp[i] * bq[i];
                }
                if (gamma == 0.0 || fabs(gamma) <= 1e-15 * sqrt(alpha) * sqrt(beta)) continue;
                converged = 0;
                double zeta = (beta - alpha) / (2.0 * gamma);
                double t = (zeta >= 0.0 ? 1.0 : -1.0) / (fabs(zeta) + hypot(1.0, zeta));
                double cs = 1.0 / sqrt(1.0 + t * t), sn = cs * t;
                for (int32_t i = 0; i < rows; i++) {
                    double u = bp[i], v = bq[i];
                    bp[i] = cs * u - sn * v;
                    bq[i] = sn * u + cs * v;
                }
            }
        }
    }
    if (!converged) return -1.0;
    double smax = 0.0, smin = INFINITY;
    for (int32_t j = 0; j < cols; j++) {
        double s = 0.0;
        for (int32_t i = 0; i < rows; i++) s += b[j * rows + i] * b[j * rows + i];
        s = sqrt(s);
        if (s > smax) smax = s;
        if (s < smin) smin = s;
    }
    return smin > 0.0 ? smax / smin : INFINITY;
}
