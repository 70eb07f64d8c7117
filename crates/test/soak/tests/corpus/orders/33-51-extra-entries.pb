
corpus-shop	BAD-EXTRA"����*ready_to_ship2card:w
山田 太郎ヤマダ タロウ150-0001"	東京都*渋谷区神宮前1-1-12101:03-0000-0000Btaro@example.comBw
山田 太郎ヤマダ タロウ150-0001"	東京都*渋谷区神宮前1-1-12101:03-0000-0000Btaro@example.comZ�*�(�0�.bnote of BAD-EXTRAj%
TSHIRT-RED-MTシャツ 赤 M �r
k37vr
k1vr
k38vr
k39vr
k20vr
k25vr
k43vr
k7vr
k11vr
k12vr
k13vr
k2vr
k8vr
k21vr
k35vr
k28vr
k27vr
k15vr
k22vr
k31vr
k24vr
k36vr
k0vr
k26vr
k41vr
k40vr
k44vr
k46vr
k29vr
k14vr
k47vr
k50vr
k48vr
k49vr
k16vr
k23vr
k32vr
k3vr
k34vr
k45vr
k9vr
k42vr
k10vr
k5vr
k4vr
k6vr
k18vr
k19vr
k30vr
k33vr
k17v