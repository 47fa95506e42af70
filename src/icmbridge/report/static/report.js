// icmbridge report: sortable tables, the comparison slider, and the image count a headless
// browser test reads from <body data-images-*> (copied next to index.html as assets/report.js).
(function(){
function countImages(){
  var imgs=Array.prototype.slice.call(document.images),ok=0,bad=[];
  imgs.forEach(function(i){
    if(i.complete&&i.naturalWidth>0)ok++;else bad.push(i.getAttribute('src'));});
  var d=document.body.dataset;d.imagesTotal=imgs.length;d.imagesLoaded=ok;d.imagesFailed=bad.length;
  if(bad.length)d.imagesFailedSrc=bad.slice(0,5).join(' ');else delete d.imagesFailedSrc;
}
window.addEventListener('load',function(){countImages();document.body.dataset.ready='1';});
// sortable tables: numbers by data-v, empty cells last
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('thead th').forEach(function(th,col){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      t.querySelectorAll('thead th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows),num=th.dataset.sort==='num';
      rows.sort(function(a,b){
        var x=a.cells[col].dataset.v,y=b.cells[col].dataset.v;
        if(x===''&&y==='')return 0;if(x==='')return 1;if(y==='')return -1;
        var r=num?parseFloat(x)-parseFloat(y):x.localeCompare(y);return asc?r:-r;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
// comparison slider
var dataEl=document.getElementById('cmp-data');if(!dataEl)return;
var D=JSON.parse(dataEl.textContent),stage=document.getElementById('cmp-stage');
var L=document.getElementById('cmp-left-img'),R=document.getElementById('cmp-right-img');
var selI=document.getElementById('cmp-image'),selL=document.getElementById('cmp-left'),
    selR=document.getElementById('cmp-right'),range=document.getElementById('cmp-range');
function view(){
  var v=document.querySelector('input[name=cmp-view]:checked');return v?v.value:'crop';}
function pick(set,label){return set[label]||set.original||set[Object.keys(set)[0]];}
function update(){
  var im=D.images[+selI.value||0],v=view(),set=im[v];
  L.src=pick(set,selL.value);R.src=pick(set,selR.value);
  stage.className='cmp-stage '+v;
  document.getElementById('cmp-tag-l').textContent=set[selL.value]?selL.value:'(none)';
  document.getElementById('cmp-tag-r').textContent=set[selR.value]?selR.value:'(none)';
}
// full images shown larger than they are keep their pixels sharp (the grid stays visible)
function sharp(){[L,R].forEach(function(i){
  i.classList.toggle('up',i.naturalWidth>0&&i.naturalWidth<i.clientWidth);});}
[L,R].forEach(function(i){i.addEventListener('load',function(){countImages();sharp();});
  i.addEventListener('error',countImages);});
[selI,selL,selR].forEach(function(s){s.addEventListener('change',update);});
document.querySelectorAll('input[name=cmp-view]').forEach(function(r){r.addEventListener('change',update);});
range.addEventListener('input',function(){stage.style.setProperty('--pos',range.value+'%');});
})();
