
ghost-shop-never-set-up	BAD-GHOST"����*ready_to_ship2card:w
山田 太郎ヤマダ タロウ150-0001"	東京都*渋谷区神宮前1-1-12101:03-0000-0000Btaro@example.comBw
山田 太郎ヤマダ タロウ150-0001"	東京都*渋谷区神宮前1-1-12101:03-0000-0000Btaro@example.comZ�*�(�0�.bnote of BAD-GHOSTj%
TSHIRT-RED-MTシャツ 赤 M �