import collections, re, sys
for f in sys.argv[1:]:
    tot=0; byleaf=collections.Counter(); bythread=collections.Counter(); incl=collections.Counter()
    for line in open(f):
        m=re.match(r"(.*) (\d+)$", line.rstrip())
        if not m: continue
        stack,n=m.group(1),int(m.group(2))
        frames=stack.split(";")
        tot+=n; th=re.sub(r"\(\d+\)","",frames[0]); bythread[th]+=n
        byleaf[frames[-1]]+=n
        for fr in set(frames[1:]): incl[fr]+=n
    print("==",f,"samples",tot)
    for k,v in bythread.most_common(6): print(f"  thread {v:6d} {k}")
    print(" self:")
    for k,v in byleaf.most_common(12): print(f"  {v:6d} {100*v/tot:5.1f}% {k}")
    print(" inclusive (tsm frames):")
    for k,v in incl.most_common(60):
        if "tsm_notebook" in k or "gzip" in k or "zlib" in k or "psutil" in k: print(f"  {v:6d} {100*v/tot:5.1f}% {k}")
