# Float64 reference fit of the kGLM (scipy L-BFGS-B, gtol 1e-14) on a cached exact-trntk kernel of a
# `compare --max-train N --max-test M --seed 0` run, for checking the engine's fit.
#   python3 scripts/fit_reference.py sms-spam MODELFP-TEXTSFP 1000 500 [lambda]
import json, struct, sys, numpy as np
from scipy.optimize import minimize
from scipy.stats import kendalltau
M=(1<<64)-1
def mix(z):
    z=((z^(z>>30))*0xBF58476D1CE4E5B9)&M
    z=((z^(z>>27))*0x94D049BB133111EB)&M
    return z^(z>>31)
def derive(seed,*path):
    k=mix((seed+0x9E3779B97F4A7C15)&M)
    for p in path: k=mix(k^mix((p+0xD1B54A32D192ED03)&M))
    return k
def bits(key,c): return mix(key^mix((c*0x9E3779B97F4A7C15+0x632BE59BD9B4E019)&M))
def sample(n_all,n,seed,stream):
    key=derive(seed,0x5A3B1E,stream)
    return sorted(sorted(range(n_all),key=lambda i:bits(key,i))[:n])
def load(f):
    b=open(f,'rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); out={}
    for k,v in h.items():
        if k=='__metadata__': continue
        s,e=v['data_offsets']; dt=np.float64 if v['dtype']=='F64' else np.float32; out[k]=np.frombuffer(b[8+n+s:8+n+e],dtype=dt).reshape(v['shape'])
    return out,h.get('__metadata__',{})
name,fp,ntrain,ntest=sys.argv[1],sys.argv[2],int(sys.argv[3]),int(sys.argv[4])
lam=float(sys.argv[5]) if len(sys.argv)>5 else None
rows=[json.loads(l) for l in open(f'data/{name}/train.jsonl')]
trows=[json.loads(l) for l in open(f'data/{name}/test.jsonl')]
idx=sample(len(rows),ntrain,0,1); tidx=sample(len(trows),ntest,0,2)
labels_sorted=sorted(set(r['label'] for r in rows))
y=np.array([labels_sorted.index(rows[i]['label']) for i in idx])
import glob
kf=[f for f in glob.glob(f'features/exact-trntk-{fp}.safetensors')][0]
K,_=load(kf); K=K['kernel'].astype(np.float64)
tf=glob.glob(f'features/exact-trntk-{fp.split("-")[0]}-*-test-*.safetensors')
T,_=load([f for f in tf if fp.split('-')[1] in f][0]); Kt=T['kernel'].astype(np.float64); logits=T['logits'].astype(np.float64)
glmf=[f for f in glob.glob(f'features/exact-trntk-{fp}-trntk-kglm.safetensors')][0]
G,meta=load(glmf)
print('diag', K.diagonal()[:3], 'sym', np.abs(K-K.T).max(), 'engine lambda', meta.get('lambda'), 'iters', meta.get('iterations'))
n=len(y); C=len(labels_sorted)
s2=K.diagonal().mean()**2  # lambda is relative to the kernel's mean self-kernel (KernelGLM)
Y=np.eye(C)[y]
def f(theta,lam):
    W=theta[:C*n].reshape(C,n); b=theta[C*n:]
    Z=K@W.T+b; Z-=Z.max(1,keepdims=True); P=np.exp(Z); P/=P.sum(1,keepdims=True)
    loss=-np.log(np.maximum(P[np.arange(n),y],1e-300)).mean()+0.5*lam*(W*W).sum()
    R=(P-Y)/n; gW=(K@R).T+lam*W; gb=R.sum(0)
    return loss,np.concatenate([gW.ravel(),gb])
def logodds(Z):
    c=1 if C==2 else None
    Zs=Z-Z.max(1,keepdims=True); lp=Zs-np.log(np.exp(Zs).sum(1,keepdims=True))
    cls=np.full(len(Z),1) if C==2 else None
    p=lp[np.arange(len(Z)),cls]; q=np.log1p(-np.exp(p).clip(max=1-1e-16))
    return p-q
net=logodds(logits)
lams=[lam] if lam else [1e-1,1e-2,1e-3,1e-4,1e-5,1e-6]
for l in lams:
    r=minimize(f,np.zeros(C*n+C),args=(l*s2,),jac=True,method='L-BFGS-B',options={'maxiter':50000,'maxfun':100000,'gtol':1e-14,'ftol':1e-16})
    W=r.x[:C*n].reshape(C,n); b=r.x[C*n:]
    Zt=Kt@W.T+b
    print(f'lambda {l:g}: f={r.fun:.6e} iters={r.nit} grad={np.abs(r.jac).max():.2e} tau={kendalltau(logodds(Zt),net).statistic:.3f}')
We=G['weights'].astype(np.float64); be=G['bias'].astype(np.float64)
print('engine final fit tau', round(kendalltau(logodds(Kt@We.T+be),net).statistic,3), 'objective', f(np.concatenate([We.ravel(),be]), float(meta['lambda'])*float(meta['kernel_scale'])**2)[0])
