// kvtier batched block copy: copy many (src, dst, len) regions in one launch.
//
// Compiled at run time by NVRTC (embedded with include_str! in kvtier-cuda).
// Pointers are device-accessible addresses: device memory, or page-locked host
// memory allocated with CU_MEMHOSTALLOC_DEVICEMAP (unified addressing), so one
// launch can gather/scatter many small per-layer regions between tiers.
//
// One thread block (CTA) per region, grid-striding over regions; within a
// region, 16-byte vector copies when src, dst and len are 16-byte aligned,
// byte copies otherwise.

extern "C" __global__ void kvtier_block_copy(const unsigned long long *srcs,
                                             const unsigned long long *dsts,
                                             const unsigned long long *lens,
                                             unsigned int n) {
    for (unsigned int r = blockIdx.x; r < n; r += gridDim.x) {
        const unsigned long long s = srcs[r];
        const unsigned long long d = dsts[r];
        const unsigned long long len = lens[r];
        if (((s | d | len) & 15ULL) == 0ULL) {
            const uint4 *sv = reinterpret_cast<const uint4 *>(s);
            uint4 *dv = reinterpret_cast<uint4 *>(d);
            const unsigned long long nv = len >> 4;
            for (unsigned long long i = threadIdx.x; i < nv; i += blockDim.x) {
                dv[i] = sv[i];
            }
        } else {
            const unsigned char *sb = reinterpret_cast<const unsigned char *>(s);
            unsigned char *db = reinterpret_cast<unsigned char *>(d);
            for (unsigned long long i = threadIdx.x; i < len; i += blockDim.x) {
                db[i] = sb[i];
            }
        }
    }
}
