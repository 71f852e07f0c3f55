import sys, time, torch
T = int(sys.argv[1]); torch.set_num_threads(T)
for R in (256, 4096):
    x = torch.randn(R, 1024)
    for name, f in (('sum dim1', lambda: x.sum(1)), ('sum dim0', lambda: x.sum(0)), ('amax dim1', lambda: x.amax(1)), ('mean dim1', lambda: x.mean(1))):
        b = 1e9
        for _ in range(400):
            t = time.perf_counter(); f(); d = time.perf_counter() - t; b = min(b, d)
        print(f'torch T={T} {name} ({R}, 1024): {b*1e6:.2f} us, {R*1024*4/b/1e9:.1f} GB/s')
